"""One stage of `tunelab continual`: what a stage adds to its multitask fine-tuning run (a finetune.Extension).

Stage i's run has members 0..i (adapters: i alone). ``adapt``:
  1. copies stage i-1's trained weights into the fresh model (every tensor of the same name and shape: the shared
     encoder, the method's weights, the earlier heads; the new head keeps its fresh initialisation);
  2. trains on stage i's examples only, plus (replay) a reservoir sample of ``replay_k`` examples of each earlier
     stage, mixed by TaskMixture (a batch holds one task, each with its own head and loss);
  3. selects the best checkpoint on stage i's own dev metric (the earlier tasks' dev data is not looked at while
     training; it is evaluated once at the end, for the accuracy matrix);
  4. adds EWC's penalty (the Fisher of every earlier task at stage i-1's weights) or LwF's distillation to the
     objective (pure terms on the forward's outputs).
Everything is rebuilt the same way from the data and stage i-1's folder, so a resumed stage continues exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunelab.errors import TunelabError
from tunelab.recipes import finetune
from tunelab.training.objective import Objective

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # what another head of the encoder is given (LwF)


class Stage(finetune.Extension):
    def __init__(self, cc, previous: Path | None):
        self.cc, self.previous = cc, previous
        self.notes: dict = {}

    def adapt(self, setup: finetune.Setup) -> None:
        from tunelab import runs
        from tunelab.tasks import TASKS

        task = TASKS["multitask"]
        names = task.members(setup.cfg)
        current = names[-1]
        prepared = setup.prepared
        spans = member_spans(prepared.features["train"])
        prev = runs.load_run(self.previous) if self.previous is not None else None
        if prev is not None:
            self.notes["initialised_tensors"] = copy_matching(prev.model, setup.model)
            setup.log(f"continual: started from {self.previous} ({self.notes['initialised_tensors']} tensors)")
        base = prepared.objective
        if self.cc.strategy == "ewc" and prev is not None:
            per_task = self.cc.fisher_batches * setup.cfg.train.batch_size
            older = {n: [prepared.features["train"][i] for i in spans[n][:per_task]] for n in names[:-1]}
            prepared.objective = with_ewc(base, setup, older, self.cc)
        if self.cc.strategy == "lwf" and prev is not None:
            prepared.objective = with_lwf(base, prev.model, names[:-1], current, self.cc)
        keep = {current: spans[current]}
        if self.cc.strategy == "replay":
            keep.update(
                {n: reservoir(spans[n], self.cc.replay_k, setup.cfg.train.seed + k) for k, n in enumerate(names[:-1])}
            )
        chosen = [i for n in names if n in keep for i in keep[n]]
        self.notes["training_examples"] = {n: len(v) for n, v in keep.items()}
        train = prepared.features["train"]
        sources = [[train[i] for i in keep[n]] for n in names if n in keep]
        prepared.features["train"] = [train[i] for i in chosen]
        prepared.sampler = mixture(setup.cfg, sources)
        prepared.evaluate = current_only(setup, task, current)

    def metrics(self) -> dict:
        return {"continual": {"strategy": self.cc.strategy, **self.notes}}


def member_spans(features: list[dict]) -> dict[str, list[int]]:
    """Indices of each member's training features (multitask features carry their member under ``_task``)."""
    out: dict[str, list[int]] = {}
    for i, f in enumerate(features):
        out.setdefault(f["_task"], []).append(i)
    return out


def copy_matching(source, target) -> int:
    """Copy every tensor of ``source``'s state into ``target``'s where name and shape agree; returns how many."""
    import torch

    mine = target.state_dict()
    theirs = {k: v for k, v in source.state_dict().items() if k in mine and mine[k].shape == v.shape}
    if not theirs:
        raise TunelabError("continual: the previous stage's weights match nothing of this stage's model")
    with torch.no_grad():
        for k, v in theirs.items():
            mine[k].copy_(v)
    return len(theirs)


def reservoir(indices: list[int], k: int, seed: int) -> list[int]:
    """A reservoir sample (training/continual.Reservoir) of at most k of ``indices``, in their order."""
    from tunelab.training.continual import Reservoir

    memory = Reservoir(k, seed)
    for i in indices:
        memory.add(i)
    return sorted(memory.items)


def mixture(cfg, sources: list[list[dict]]):
    """Proportional TaskMixture over the kept training features of each member."""
    from tunelab.training.mixing import TaskMixture, source_lengths

    lengths = source_lengths(sources, cfg.train.length_grouping)
    return TaskMixture(lengths, cfg.train.batch_size, cfg.train.seed, "proportional")


def current_only(setup: finetune.Setup, task, current: str):
    """The dev evaluator during training: the current stage's task only (its metric as ``macro``)."""
    from tunelab import runs
    from tunelab.tasks import TASKS
    from tunelab.tasks.multitask import combined

    loaded = runs.LoadedRun(setup.cfg, setup.model, setup.tokenizer, setup.labels, [])
    member = task.member_run(loaded, current)
    kind = TASKS[member.cfg.task.name]
    rows = [r.row for r in setup.splits["dev"] if r.task == current]
    ev = kind.evaluator(member, rows, f"{member.cfg.data.dev or member.cfg.data.train} (dev)", setup.log)
    return combined({current: ev}, {current: kind.metric(None).name})


# ---------------------------------------------------------------- EWC


def with_ewc(base: Objective, setup: finetune.Setup, older: dict[str, list[dict]], cc) -> Objective:
    """``base`` + (lambda / 2) sum F (theta - theta*)^2, with theta* the weights now (the previous stage's) and F the
    sum over the earlier tasks (``older``: each one's training features) of that task's diagonal empirical Fisher at
    theta*: the mean over its examples of the squared gradient of the example's own loss (its mean over its items),
    as in Kirkpatrick et al. 2017, one penalty per earlier task, all anchored at the latest weights (Huszar 2018).
    F is then the diagonal of the Hessian of each earlier task's mean loss, so at lambda = 1 the penalty is the
    quadratic estimate of how much the earlier tasks' losses rise. The penalty is added once per optimizer step: the
    loop divides the summed loss by the step's item count, so each micro-batch adds penalty * its item count."""
    from tunelab.training.continual import diagonal_fisher, ewc_penalty

    model = setup.model

    def loss_of(m, batch):
        total, n = base.loss(base.forward(m, batch), batch)
        return total / max(n, 1)

    was = model.training
    model.eval()  # no dropout: F at the previous weights
    fisher: dict = {}
    for name, features in older.items():
        examples = [setup.prepared.collate([f]) for f in features]  # one example each: per-example gradients
        for key, f in diagonal_fisher(model, examples, loss_of).items():
            fisher[key] = fisher[key] + f if key in fisher else f
        setup.log(f"continual: EWC Fisher of {name} over {len(features)} of its training examples")
    model.train(was)
    anchors = {n: p.detach().clone() for n, p in model.named_parameters() if n in fisher}

    def loss(outputs, batch):
        total, n = base.loss(outputs, batch)
        penalty = ewc_penalty(model.named_parameters(), anchors, fisher, cc.ewc_lambda)
        return total + penalty.to(total.dtype) * n, n

    return Objective(base.forward, loss, base.count)


# ---------------------------------------------------------------- LwF


@dataclass
class WithOld:
    """The current task's outputs and, per earlier head, (this model's, the previous model's) logits."""

    outputs: object
    old: list


def with_lwf(base: Objective, teacher, old: list[str], current: str, cc) -> Objective:
    """``base`` + weight * T^2 * KL(previous || current) of every earlier head's outputs on the current task's
    inputs, averaged over each head's items and counted once per example (Li & Hoiem's LwF)."""
    import torch

    from tunelab.models.multitask import TaskView
    from tunelab.training.kd import divergence

    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    def forward(model, batch):
        outputs = base.forward(model, batch)
        if batch["task"] != current:  # a replayed batch of an earlier task: nothing to distil
            return WithOld(outputs, [])
        inputs = {k: v for k, v in batch.items() if k in MODEL_INPUTS}
        teacher.to(inputs["input_ids"].device)
        pairs = []
        for name in old:
            with torch.no_grad():
                target = TaskView(teacher, name)(**inputs).logits
            pairs.append((TaskView(model, name)(**inputs).logits, target, inputs.get("attention_mask")))
        return WithOld(outputs, pairs)

    def loss(outputs: WithOld, batch):
        total, n = base.loss(outputs.outputs, batch)
        for student, target, mask in outputs.old:
            items_s, items_t = items(student, mask), items(target, mask)
            kd = divergence(items_s, items_t, "forward_kl", cc.lwf_temperature).mean()
            total = total + cc.lwf_weight * cc.lwf_temperature**2 * kd * n
        return total, n

    return Objective(forward, loss, base.count)


def items(logits, mask):
    """(items, classes): one row per example for (batch, classes) logits, per attended token for (batch, seq, classes)."""
    if logits.dim() == 2:
        return logits
    return logits[mask.bool()] if mask is not None else logits.reshape(-1, logits.shape[-1])
