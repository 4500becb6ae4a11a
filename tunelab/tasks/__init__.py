"""Tasks: how examples are read, encoded, scored and decoded. TASKS maps config names to modules."""

from tunelab.tasks import causal_lm, classification, token_classification

TASKS = {
    "classification": classification,
    "token_classification": token_classification,
    "causal_lm": causal_lm,
}
