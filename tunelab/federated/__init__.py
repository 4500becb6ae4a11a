"""Federated fine-tuning on Flower (`tunelab federated`): partitions, client rounds, Flower apps, report.

Flower itself is imported only by flower.py, which only the federated recipe imports.
"""
