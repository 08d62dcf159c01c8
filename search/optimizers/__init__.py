"""Optimizers: loops only (they ask models and acquisition functions, never fit or rank themselves)."""
