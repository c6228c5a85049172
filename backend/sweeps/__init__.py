"""Hyperparameter sweeps with Optuna, on the app's side: each trial is an ordinary run of the job manager."""
