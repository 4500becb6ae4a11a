"""The torch side of `tunelab distill`: the teacher, its cached targets, the collate and objective that use them.

Kept apart from distill.py so the distill config loads without torch.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import torch

from tunelab import runs
from tunelab.errors import TunelabError
from tunelab.recipes import distill
from tunelab.training import distributed, kd
from tunelab.training.callbacks import Callback
from tunelab.training.objective import Objective


def adapt(setup, cfg: distill.DistillConfig) -> dict:
    """Add the unlabelled features, the cached teacher targets, the distillation collate and objective to ``setup``;
    returns the teacher-vs-student summary for metrics.json."""
    prepared, log = setup.prepared, setup.log
    features = list(prepared.features["train"]) + list(prepared.features.pop("unlabelled", []))
    teacher = load_teacher(cfg, setup)
    check_labels(teacher, setup)
    distill.check_tokenizers(teacher.tokenizer, setup.tokenizer, cfg.teacher)
    capture = LastHidden(setup.model) if cfg.hidden != "none" else None
    targets = cached_targets(setup, cfg, teacher, features)
    if not int(targets["offsets"][-1]):
        raise TunelabError(f"distill: task {setup.task.name} gives no distillation items for these training rows")
    prepared.features["train"] = [{**f, "_kd": i} for i, f in enumerate(features)]
    prepared.collate = partial(collate_with_targets, prepared.collate, targets)
    projection = None
    if capture is not None:
        projection = make_projection(capture.width, targets["pooled"].shape[-1])
        setup.modules.append(projection)
        setup.callbacks.append(ModuleState(projection))
    soft = kd.Soft(cfg.divergence, cfg.temperature, cfg.beta)
    prepared.objective = distill_objective(setup.task, prepared.objective, cfg, soft, (capture, projection))
    log(
        f"distill: teacher {cfg.teacher}, {cfg.divergence} at T={cfg.temperature}, alpha={cfg.alpha}, "
        f"{len(features)} training features"
    )
    return summary(setup, cfg, teacher, targets)


# ---------------------------------------------------------------- the teacher


def load_teacher(cfg: distill.DistillConfig, setup) -> runs.LoadedRun:
    """A run folder's model (its method applied), or a model loaded as is for the student's task."""
    path = Path(cfg.teacher)
    if (path / "config.yaml").is_file():
        teacher = runs.load_run(path)
        if teacher.cfg.task.name != setup.task.name:
            raise TunelabError(
                f"distill.teacher {path}: a {teacher.cfg.task.name} run; the student's task is {setup.task.name}"
            )
        return teacher
    tcfg = setup.cfg.model_copy(deep=True)
    tcfg.model.name, tcfg.model.layers, tcfg.model.gguf_file = cfg.teacher, None, None
    tokenizer, model, head = runs.build_base(tcfg, setup.labels)
    if head:
        setup.log(
            f"warning: distill.teacher {cfg.teacher} has no trained {', '.join(head)}: its targets are random there"
        )
    model.eval()
    return runs.LoadedRun(tcfg, model, tokenizer, setup.labels, head)


def check_labels(teacher: runs.LoadedRun, setup) -> None:
    if teacher.labels is not None and teacher.labels != setup.labels:
        raise TunelabError(
            f"distill.teacher: its labels {teacher.labels} differ from the student's training labels {setup.labels}"
        )


def cached_targets(setup, cfg: distill.DistillConfig, teacher: runs.LoadedRun, features: list[dict]) -> dict:
    """The teacher's targets for every training feature, from run_dir/teacher_targets.pt when it matches, else
    computed (once) and written there."""
    key = distill.targets_key(cfg, distill.teacher_identity(cfg.teacher), features)
    path = Path(setup.run_dir) / distill.TARGETS_FILE
    if path.is_file():
        saved = torch.load(path, weights_only=True)
        if saved.get("key") == key:
            setup.log(f"distill: teacher targets from {path} (cached)")
            return saved
        setup.log(f"distill: {path} was made for other data or another teacher; recomputing")
    start = time.perf_counter()
    collate = setup.prepared.collate
    targets = teacher_targets(teacher.model, setup.task, setup.prepared.objective.forward, features, collate, cfg)
    targets["key"] = key
    targets["seconds"] = round(time.perf_counter() - start, 1)
    if distributed.is_main_process():  # every process computed the same targets; one writes them
        tmp = path.with_suffix(".tmp")
        torch.save(targets, tmp)
        tmp.replace(path)
    setup.log(f"distill: teacher targets for {len(features)} features in {targets['seconds']} s -> {path}")
    return targets


def teacher_targets(model, task, forward, features: list[dict], collate, cfg: distill.DistillConfig) -> dict:
    """Top-k logits per item (values float32, indices int64, item offsets per feature) and, with hidden-state
    matching, the mean-pooled last hidden state per feature; in feature order."""
    device = next(model.parameters()).device
    model.eval()
    capture = LastHidden(model) if cfg.hidden != "none" else None
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    per: dict[int, tuple] = {}
    with torch.no_grad():
        for s in range(0, len(order), cfg.teacher_batch_size):
            idx = order[s : s + cfg.teacher_batch_size]
            batch = {
                k: v.to(device) if isinstance(v, torch.Tensor) else v
                for k, v in collate([features[i] for i in idx]).items()
            }
            items = task.item_logits(forward(model, batch), batch)
            if items.logits is not None:
                values, indices = kd.top_k(items.logits.float(), cfg.top_k)
            else:
                values, indices = kd.top_k_linear(items.hidden, items.weight, cfg.top_k)
            pooled = kd.mean_pool(capture.value, batch["attention_mask"]) if capture else None
            for r, i in enumerate(idx):
                mine = items.rows == r
                per[i] = (
                    values[mine].cpu(),
                    indices[mine].cpu(),
                    pooled[r].float().cpu() if pooled is not None else None,
                )
    if capture is not None:
        capture.remove()
    counts = [per[i][0].shape[0] for i in range(len(features))]
    k = per[0][0].shape[-1] if features else cfg.top_k
    out = {
        "values": torch.cat([per[i][0] for i in range(len(features))]) if features else torch.zeros(0, k),
        "indices": torch.cat([per[i][1] for i in range(len(features))])
        if features
        else torch.zeros(0, k, dtype=torch.long),
        "offsets": torch.tensor([0] + counts).cumsum(0),
    }
    if capture is not None:
        out["pooled"] = torch.stack([per[i][2] for i in range(len(features))])
    return out


def summary(setup, cfg: distill.DistillConfig, teacher: runs.LoadedRun, targets: dict) -> dict:
    """Teacher vs student for the report: dev metrics of the teacher, parameter counts, caching time."""
    from tunelab.methods.base import count_parameters
    from tunelab.training.evaluation import evaluate as run_evaluator

    dev = {k: v for k, v in run_evaluator(setup.prepared.evaluate, teacher.model).items() if isinstance(v, float)}
    return {
        "teacher": cfg.teacher,
        "teacher_model": teacher.cfg.model.name,
        "teacher_layers": teacher.cfg.model.layers,
        "teacher_parameters": count_parameters(teacher.model)[1],
        "student_parameters": count_parameters(setup.model)[1],
        "teacher_dev": dev,
        "teacher_items": int(targets["offsets"][-1]),
        "targets_seconds": targets.get("seconds"),
    }


# ---------------------------------------------------------------- batches and the objective


def collate_with_targets(collate, targets: dict, features: list[dict]) -> dict:
    """The task's batch plus the teacher's targets of its features, items in batch order:
    teacher_values/teacher_indices (items, k), teacher_pooled (batch, d) with hidden-state matching."""
    batch = collate(features)
    ids = [f["_kd"] for f in features]
    off = targets["offsets"]
    spans = [slice(int(off[i]), int(off[i + 1])) for i in ids]
    batch["teacher_values"] = torch.cat([targets["values"][s] for s in spans])
    batch["teacher_indices"] = torch.cat([targets["indices"][s] for s in spans]).long()
    if "pooled" in targets:
        batch["teacher_pooled"] = targets["pooled"][ids]
    return batch


def distill_objective(task, base: Objective, cfg: distill.DistillConfig, soft: kd.Soft, hidden: tuple) -> Objective:
    """alpha * CE + (1 - alpha) * T^2 * divergence (+ hidden_weight * hidden distance), summed over items."""
    capture, projection = hidden

    def forward(model, batch: dict) -> dict:
        out = {"task": base.forward(model, batch)}
        if capture is not None:
            out["pooled"] = kd.mean_pool(capture.value, batch["attention_mask"])  # (batch, d_student)
        return out

    def loss(outputs: dict, batch: dict):
        ce, _ = base.loss(outputs["task"], batch)
        items = task.item_logits(outputs["task"], batch)
        total = cfg.alpha * ce + (1.0 - cfg.alpha) * kd.distill_sum(
            items, batch["teacher_values"], batch["teacher_indices"], soft
        )
        if capture is not None:
            student = projection(outputs["pooled"].float())
            total = total + cfg.hidden_weight * kd.hidden_loss(student, batch["teacher_pooled"], cfg.hidden)
        return total, count(batch)

    return Objective(forward, loss, count)


def count(batch: dict) -> int:
    return int(batch["teacher_values"].shape[0])


# ---------------------------------------------------------------- hidden-state matching


class LastHidden:
    """Keeps the output of a model's last transformer layer from its latest forward pass: (batch, seq, d)."""

    def __init__(self, model):
        from tunelab.methods.base import find_layers

        _, layers = find_layers(model)
        self.value = None
        self.width = model.config.hidden_size
        self.handle = layers[-1].register_forward_hook(self._keep)

    def _keep(self, _module, _inputs, output) -> None:
        self.value = output[0] if isinstance(output, tuple) else output

    def remove(self) -> None:
        self.handle.remove()


def make_projection(student_width: int, teacher_width: int) -> torch.nn.Module:
    """Identity when the widths agree (nothing to learn), else a learned linear map student -> teacher width."""
    if student_width == teacher_width:
        return torch.nn.Identity()
    return torch.nn.Linear(student_width, teacher_width)


class ModuleState(Callback):
    """Saves and restores an extra trained module (the projection) with every checkpoint."""

    def __init__(self, module: torch.nn.Module):
        self.module = module

    def state_dict(self) -> dict:
        return {k: v.detach().cpu().clone() for k, v in self.module.state_dict().items()}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.module.load_state_dict(state)
