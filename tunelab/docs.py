"""The README's config-key tables, generated from the schemas so they cannot drift.

Each config section (``run`` for the top-level keys, then ``task`` and one ``task.NAME`` per task, ``model``,
``data``, ``method``, ``train``, ... and ``serve`` for `tunelab serve --config`) is one markdown table, printed by
``tunelab config --markdown --section NAME``. The README holds each table exactly once between markers::

    <!-- BEGIN tunelab config --markdown --section serve -->
    | key | default | description |
    ...
    <!-- END tunelab config --markdown --section serve -->

``python -m tunelab.docs README.md`` rewrites every such block from the schemas; tests/test_readme.py
fails when a block is stale, a section has no block, or a key has a row twice.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HEADER = "| key | default | description |\n|---|---|---|"
BLOCK = re.compile(
    r"<!-- BEGIN tunelab config --markdown --section (\S+) -->\n(.*?)<!-- END tunelab config --markdown "
    r"--section \1 -->",
    re.S,
)


def rows() -> list[tuple[str, str, str, str]]:
    """(section, key as written in the table, default, description) for every key, serve's included."""
    from tunelab.federated.config import FederatedConfig
    from tunelab.recipes.continual import ContinualConfig
    from tunelab.recipes.distill import DistillConfig
    from tunelab.serve.config import ServeConfig

    out = []
    for key, default, desc in describe():
        name, _, scope = key.partition("  ")  # "method.r  [lora]": a method's own key
        section = name.split(".")[0] if "." in name else "run"
        if section == "task" and scope.strip():  # a task's own keys: one table per task ("task.causal_lm")
            section = f"task.{scope.strip().strip('[]')}"
        shown = f"`{name}` {scope.strip()}" if scope.strip() else f"`{name}`"
        out.append((section, shown, default, desc))
    for name, field in ServeConfig.model_fields.items():
        default = "null" if field.default is None else str(field.default)
        out.append(("serve", f"`serve.{name}`", default, field.description or ""))
    for section, model in (
        ("distill", DistillConfig),
        ("continual", ContinualConfig),
        ("federated", FederatedConfig),
    ):  # recipes' own sections
        _section_rows(section, model, section, out)
    return out


def _section_rows(section: str, model, prefix: str, out: list) -> None:
    """Rows of a recipe's own section; a nested section (``federated.secure_aggregation``, optional or not) adds
    its keys after its own row."""
    import typing

    from pydantic import BaseModel

    for name, field in model.model_fields.items():
        default = "(required)" if field.is_required() else "null" if field.default is None else str(field.default)
        out.append((section, f"`{prefix}.{name}`", default, field.description or ""))
        for inner in (field.annotation, *typing.get_args(field.annotation)):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                _section_rows(section, inner, f"{prefix}.{name}", out)


def sections() -> list[str]:
    """Section names in schema order."""
    return list(dict.fromkeys(section for section, *_ in rows()))


def markdown(section: str | None = None) -> str:
    """One section's table, or (None) every key of the run config (serve excluded) in one table."""
    own = ("serve", "distill", "continual", "federated")  # sections outside the run config
    chosen = [r for r in rows() if (r[0] == section if section else r[0] not in own)]
    if not chosen:
        raise ValueError(f"unknown section {section!r}; sections: {', '.join(sections())}")
    body = "\n".join(f"| {key} | {_cell(default)} | {_cell(desc)} |" for _, key, default, desc in chosen)
    return f"{HEADER}\n{body}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def blocks(readme: str) -> dict[str, list[str]]:
    """Section -> the contents of each README block generated for it (a section should have exactly one)."""
    out: dict[str, list[str]] = {}
    for m in BLOCK.finditer(readme):
        out.setdefault(m.group(1), []).append(m.group(2).rstrip("\n"))
    return out


def update(readme: str) -> str:
    """The README with every generated block rewritten from the schemas."""
    return BLOCK.sub(
        lambda m: (
            f"<!-- BEGIN tunelab config --markdown --section {m.group(1)} -->\n{markdown(m.group(1))}\n"
            f"<!-- END tunelab config --markdown --section {m.group(1)} -->"
        ),
        readme,
    )


def main(argv: list[str]) -> int:
    path = Path(argv[0] if argv else "README.md")
    text = path.read_text(encoding="utf-8")
    new = update(text)
    if new != text:
        path.write_text(new, encoding="utf-8")
    print(f"{path}: {'updated' if new != text else 'up to date'} ({len(blocks(new))} generated tables)")
    return 0


def describe() -> list[tuple[str, str, str]]:
    """(key, default, description) for every config key, tasks' and methods' included; feeds `tunelab config` and the README."""
    rows: list[tuple[str, str, str]] = []
    from tunelab import config

    _describe(config.RunConfig, "", rows)
    for section, table in config.UNIONS.items():
        for name, entry in table.items():
            for field_name, field in entry.Config.model_fields.items():
                if field_name != "name":
                    rows.append((f"{section}.{field_name}  [{name}]", _default(field), field.description or ""))
    return rows


def _describe(model, prefix: str, rows: list) -> None:
    from pydantic import BaseModel

    from tunelab.methods import METHODS
    from tunelab.tasks import TASKS

    for field_name, field in model.model_fields.items():
        key = f"{prefix}{field_name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            _describe(annotation, key + ".", rows)
        elif field_name == "task":
            rows.append(
                (
                    "task.name",
                    "classification",
                    "What the model learns: " + ", ".join(TASKS) + " (short form: `task: NAME`).",
                )
            )
        elif field_name == "method":
            rows.append(
                ("method.name", "full", "Fine-tuning method: " + ", ".join(METHODS) + " (short form: `method: NAME`).")
            )
        else:
            rows.append((key, _default(field), field.description or ""))


def _default(field) -> str:
    if field.default_factory is not None:
        return ""
    return "null" if field.default is None else str(field.default)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
