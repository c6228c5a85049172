"""Rewards for reinforcement learning (task grpo): parsed from the `rewards` option, scored on completions.

Shared by the training job (TRL's GRPOTrainer calls them) and the app's evaluator (base against tuned
on held-out prompts), so both score a completion the same way.
"""
