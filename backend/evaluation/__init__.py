"""Scoring runs in the app: tuned against base, perplexity, classification metrics, batch predict."""
