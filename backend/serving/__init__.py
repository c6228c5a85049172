"""What the app does with trained weights: chat with them, import foreign adapters, export."""
