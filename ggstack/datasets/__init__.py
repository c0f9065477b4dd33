"""Datasets: rows from data URIs and uploaded sources."""
