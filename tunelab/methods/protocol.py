"""The method protocol: what every module in ``METHODS`` provides (checked when METHODS is built).

A method is one module. To add one, write ``tunelab/methods/<name>.py`` with every member below and add
one line to ``METHODS`` in ``tunelab/methods/__init__.py``; the method contract suite
(tests/methods/test_contract.py) then runs over it. Import torch and peft inside functions so configs
load without them. Defaults for the members most methods do not specialise live in ``methods/base.py``
(``default_param_groups``, ``no_callbacks``, ``no_merge``).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Method(Protocol):
    """One fine-tuning method.

    Config: a ``schema.Strict`` model with ``name: Literal["<name>"]`` and the method's options (each with a
        description: it becomes ``tunelab config`` and the README table).
    MERGEABLE: whether ``merge`` folds the method into plain base weights (``tunelab merge``).
    IDENTITY_AT_INIT: whether the freshly applied method leaves the model's outputs unchanged.
    """

    Config: type
    MERGEABLE: bool
    IDENTITY_AT_INIT: bool

    def apply(self, model: Any, cfg: Any, head: list[str]) -> Any:
        """The model with the method added and only the intended parameters trainable (``head``, the task-head
        submodules, always train)."""

    def save(self, model: Any, out_dir: Any) -> None:
        """Write what trained into ``out_dir`` (the run folder's model/)."""

    def load(self, model: Any, cfg: Any, head: list[str], in_dir: Any) -> Any:
        """Rebuild the trained model from a freshly loaded base model and what ``save`` wrote."""

    def merge(self, model: Any) -> Any:
        """The plain base model with the method folded in (only called when MERGEABLE)."""

    def param_groups(self, model: Any, lr: float, weight_decay: float, cfg: Any) -> list[dict]:
        """Optimizer parameter groups (LoRA+ gives B matrices a larger lr)."""

    def callbacks(self, model: Any, cfg: Any) -> list:
        """Loop Callbacks the method needs while training (AdaLoRA's rank budget)."""


def check(methods: dict) -> dict:
    """``methods`` unchanged, after checking each module implements Method and is registered under its Config's name."""
    for name, module in methods.items():
        if not isinstance(module, Method):
            missing = [m for m in ("Config", "MERGEABLE", "IDENTITY_AT_INIT", *_METHODS) if m not in vars(module)]
            raise TypeError(
                f"method '{name}' ({module.__name__}) does not implement the Method protocol: missing {missing}"
            )
        declared = module.Config.model_fields["name"].default
        if declared != name:
            raise TypeError(f"method '{name}': its Config.name is '{declared}'")
    return methods


_METHODS = ("apply", "save", "load", "merge", "param_groups", "callbacks")
