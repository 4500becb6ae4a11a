"""Tasks: how examples are read, encoded, scored and decoded. TASKS maps config names to modules."""

from tunelab.tasks import causal_lm, classification

TASKS = {
    "classification": classification,
    "causal_lm": causal_lm,
}
