"""The launch form, generated from the config models: one field per key with its description and default.

Walks the pydantic models of tunelab.config generically: nested sections become groups, a tagged union
(``method:``, discriminated by ``name``) becomes a select plus each variant's fields shown only when that
variant is selected. Values travel as the text a user would type after ``key=`` on the command line, so
the dashboard validates exactly what `tunelab train key=value ...` would.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any, Literal, Union

from pydantic import BaseModel


def _text(value: Any) -> str:
    """A default as override text (YAML flow): null, true, 3e-05, [a, b], plain strings as they are."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _strip(annotation):
    """Drop Annotated wrappers; returns the bare type."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _options(annotation) -> tuple[list, bool]:
    """(alternatives, nullable) of a possibly-Optional union."""
    annotation = _strip(annotation)
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [_strip(a) for a in typing.get_args(annotation)]
        return [a for a in args if a is not type(None)], type(None) in args
    return [annotation], False


def _kind(annotation) -> dict:
    """How the form asks for a value: select (with choices), bool, number or text."""
    alts, nullable = _options(annotation)
    literals = [v for a in alts if typing.get_origin(a) is Literal for v in typing.get_args(a)]
    others = [a for a in alts if typing.get_origin(a) is not Literal]
    if not others and literals:
        return {
            "kind": "select",
            "choices": [_text(v) for v in literals] + (["null"] if nullable else []),
            "nullable": nullable,
        }
    if others == [bool] and not literals and not nullable:
        return {"kind": "bool", "nullable": False}
    if others == [bool]:
        return {
            "kind": "select",
            "choices": ["true", "false"] + [_text(v) for v in literals] + (["null"] if nullable else []),
            "nullable": nullable,
        }
    if others in ([int], [float], [int, float]) and not literals:
        return {"kind": "number", "nullable": nullable}
    return {"kind": "text", "nullable": nullable}


def _variants(info) -> tuple[str, list[type[BaseModel]]] | None:
    """(discriminator, variant models) of a tagged-union field, else None."""
    disc = info.discriminator
    if not isinstance(disc, str):
        return None
    alts, _ = _options(info.annotation)
    models = [a for a in alts if isinstance(a, type) and issubclass(a, BaseModel)]
    return (disc, models) if models else None


def fields(model: type[BaseModel], prefix: str = "", when: dict | None = None) -> list[dict]:
    """Form fields for ``model``'s keys under ``prefix`` (shown only ``when`` the given keys hold those values)."""
    return _fields(model.model_fields, prefix, when)


def _fields(items: dict, prefix: str, when: dict | None) -> list[dict]:
    out: list[dict] = []
    for name, info in items.items():
        key = f"{prefix}{name}"
        bare = _strip(info.annotation)
        tagged = _variants(info)
        if tagged:
            out += _union_fields(key, info, *tagged)
        elif isinstance(bare, type) and issubclass(bare, BaseModel):
            out += fields(bare, key + ".", when)
        else:
            default = info.default_factory() if info.default_factory is not None else info.default
            out.append(
                {
                    "key": key,
                    "section": key.split(".")[0] if "." in key else "run",
                    "default": _text(default),
                    "description": info.description or "",
                    "when": when or {},
                    **_kind(info.annotation),
                }
            )
    return out


def _union_fields(key: str, info, disc: str, models: list[type[BaseModel]]) -> list[dict]:
    names = [typing.get_args(m.model_fields[disc].annotation)[0] for m in models]
    default = info.default_factory() if info.default_factory is not None else info.default
    chosen = default.model_dump()[disc] if isinstance(default, BaseModel) else names[0]
    out = [
        {
            "key": f"{key}.{disc}",
            "section": key,
            "default": chosen,
            "description": info.description or "",
            "when": {},
            "kind": "select",
            "choices": names,
            "nullable": False,
        }
    ]
    for model, name in zip(models, names):
        sub = {n: f for n, f in model.model_fields.items() if n != disc}
        out += _fields(sub, f"{key}.", {f"{key}.{disc}": name})
    return out


def form() -> list[dict]:
    """Every field of the run config, in config order."""
    from tunelab import config

    return fields(config.RunConfig)
