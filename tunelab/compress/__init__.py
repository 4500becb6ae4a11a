"""Compression of trained runs: quantization and pruning, each measured on the run's own dev data."""
