"""Code that runs inside a training job (`python -m backend.train`): recipes, batching, launch, speed.

The app never imports this package at import time; it starts a job and reads its files.
"""
