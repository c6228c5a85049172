"""TuneForge backend: config, data, models, training jobs and chat. Never imports gradio."""
