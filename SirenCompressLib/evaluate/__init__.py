"""Evaluation beyond the per-slice metrics: classical codec baselines at matched sizes."""
