"""TuneForge web UI (Gradio). Presentation only: never imports torch, transformers or peft."""
