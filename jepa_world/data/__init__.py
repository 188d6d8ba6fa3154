"""Datasets: built-in synthetic data, image folders / index files, deterministic sampling."""
