"""One shared encoder, one task head per member task: the model of a multi-task run.

Each member's head is the member task's own transformers model (BertForSequenceClassification, ...ForTokenClassification)
with its base model (``model.base_model_prefix``: ``bert``, ``model``, ...) replaced by the shared encoder. The shared
encoder is registered once, under ``encoder``; the members hold it as a plain attribute, so it is saved, counted,
adapted (LoRA...) and moved once, and the members' own forward (pooling, dropout, classifier) runs unchanged.
State dict: ``encoder.*`` and ``heads.<member>.<head module>.*``.

``MultiTaskModel(task=NAME, **inputs)`` answers with member NAME's outputs; ``TaskView(model, NAME)`` is a module that
calls it so, for code written for a single-task model (a member task's forward, evaluators and predict).
"""

from __future__ import annotations

from pathlib import Path

import torch

WEIGHTS = "model.safetensors"


class MultiTaskModel(torch.nn.Module):
    """A shared encoder and a head per member task (see the module docstring)."""

    def __init__(self, encoder: torch.nn.Module, members: dict[str, torch.nn.Module]):
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config  # what peft and tunelab's speed levers read (hidden size, model type)
        self.heads = torch.nn.ModuleDict()
        for name, member in members.items():
            prefix = member.base_model_prefix
            delattr(member, prefix)  # the member's own copy of the encoder weights is dropped
            object.__setattr__(member, prefix, encoder)  # shared, not registered a second time
            self.heads[name] = member

    def forward(self, task: str, **inputs):
        """Member ``task``'s outputs (its transformers output object: ``.logits``...) for a batch of its inputs."""
        if task not in self.heads:
            raise KeyError(f"no head '{task}'; heads: {', '.join(self.heads)}")
        return self.heads[task](**inputs)

    def get_input_embeddings(self) -> torch.nn.Module:
        """The shared encoder's token embeddings (what prompt methods and peft read)."""
        return self.encoder.get_input_embeddings()

    def save_pretrained(self, out_dir: str) -> None:
        """Every weight (shared encoder and heads) as one safetensors file (what the ``full`` method saves)."""
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(Path(out_dir) / WEIGHTS))


class TaskView(torch.nn.Module):
    """``model`` (a MultiTaskModel, possibly wrapped by peft or accelerate) answering as member ``task`` only."""

    def __init__(self, model: torch.nn.Module, task: str):
        super().__init__()
        self.model, self.task = model, task

    def forward(self, **inputs):
        return self.model(task=self.task, **inputs)


def build(encoder: torch.nn.Module, members: dict[str, tuple[torch.nn.Module, list[str]]]):
    """(MultiTaskModel, head module names) from the shared encoder and each member's (model, head names)."""
    model = MultiTaskModel(encoder, {name: m for name, (m, _) in members.items()})
    head = [f"heads.{name}.{h}" for name, (_, names) in members.items() for h in names]
    return model, head
