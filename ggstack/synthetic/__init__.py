"""Synthetic data generation: candidate answers from a chat model, kept by a filtering function."""
