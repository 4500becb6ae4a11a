"""Recommendation from interaction logs: text datasets (prepare) and leave-last-out ranking (eval)."""
