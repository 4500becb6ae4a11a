"""Config keys that moved in tunelab 0.2 (task options into the task: section), and the upgrade of old configs.

``config.validate`` refuses a moved key with a message naming its new place, and moves it when asked to upgrade
(a run folder's config.yaml written by an earlier version).
"""

from __future__ import annotations

from typing import Any

# keys that moved into a task's section (tunelab 0.2): old dotted key -> (task, new key in task:)
MOVED = {
    f"data.{k}": ("token_classification", k)
    for k in ("tag_column", "token_prefix", "tag_scheme", "repair_tags", "label_all_subwords", "stride")
}
MOVED.update(
    {
        f"lm.{k}": ("causal_lm", k)
        for k in (
            "chat_template",
            "train_on",
            "overlong",
            "packing",
            "eval_generations",
            "eval_max_new_tokens",
            "report_samples",
        )
    }
)


def moved_keys(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """(old key, new key) for every key of ``raw`` that moved into a task section (``lm`` alone: the section)."""
    found = []
    for section in ("data", "lm"):
        values = raw.get(section)
        for key in values if isinstance(values, dict) else []:
            if f"{section}.{key}" in MOVED:
                found.append((f"{section}.{key}", f"task.{key}"))
    if "lm" in raw and not any(old.startswith("lm.") for old, _ in found):
        found.append(("lm", "task"))
    return found


def move(raw: dict[str, Any], moved: list[tuple[str, str]]) -> None:
    """Upgrade an old run folder's config: moved keys go into the task section when the task is theirs, else away
    (earlier versions wrote every default, so a classification run's config.yaml has lm: and NER data keys)."""
    task = raw.setdefault("task", {"name": "classification"})
    for old, new in moved:
        section, _, key = old.partition(".")
        if key:
            value = raw[section].pop(key)
            if MOVED[old][0] == task["name"]:
                task[key] = value
    raw.pop("lm", None)
