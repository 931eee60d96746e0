"""Training loop, evaluation and checkpoints (torch)."""
