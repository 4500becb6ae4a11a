"""Tasks: how examples are read, encoded, scored and decoded. TASKS maps config names to modules."""

from tunelab.tasks import classification

TASKS = {
    "classification": classification,
}
