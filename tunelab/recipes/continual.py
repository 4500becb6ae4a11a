"""`tunelab continual CONFIG`: learn tasks one after another (continual learning) and measure the forgetting.

CONFIG is a training config (``model:``, ``method:``, ``train:``, ...: shared by every stage) plus a ``continual:``
section with the ``stages:`` (each {name, task, data}, as a multitask member) and the strategy. Stage i is an
ordinary multitask run (its own run folder ``output_dir/NN-NAME``: resume, eval/predict/serve as any run) whose
members are stages 0..i, one head each on one shared encoder, trained on stage i's data only, starting from stage
i-1's weights (training/continual.py and finetune.Extension do the rest, see continual_stage.py):
  * naive: nothing more;
  * replay: batches of a reservoir sample of ``replay_k`` training examples of each earlier stage are mixed in;
  * ewc: + (lambda / 2) sum F (theta - theta_prev)^2, F the sum of every earlier task's diagonal empirical Fisher
    (per-example gradients) at stage i-1's weights;
  * lwf: + weight * T^2 * KL(previous model || model) of every earlier head on stage i's inputs (training/kd.py);
  * adapters: every stage trains its own method weights (a PEFT adapter) and head on the frozen base model, so an
    earlier task's weights never change; a task is answered by its stage's run folder.
After each stage every task seen so far is evaluated on its dev data (the run's final dev metrics): row i of the
accuracy matrix R. continual.json and report.md hold R, the average forgetting and the backward transfer
(training/continual.py), forgetting.png the matrix. An interrupted run resumes where it stopped (finished stages are
read back, the interrupted one resumes from its checkpoint).
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError

from tunelab import config as config_mod
from tunelab.errors import ConfigError, TunelabError
from tunelab.schema import Strict
from tunelab.tasks.multitask import Member

SAVED = "continual.yaml"
RESULTS = "continual.json"
PLOT = "forgetting.png"
STRATEGIES = ("naive", "replay", "ewc", "lwf", "adapters")


class ContinualConfig(Strict):
    """The ``continual:`` section of a `tunelab continual` config."""

    stages: list[Member] = Field(
        ..., min_length=2, description="The tasks in training order, each {name, task, data} (as a multitask member)."
    )
    strategy: Literal[STRATEGIES] = Field(  # type: ignore[valid-type]
        "naive",
        description="naive (sequential fine-tuning), replay (reservoir memory), ewc (elastic weight consolidation), "
        "lwf (learning without forgetting), adapters (own method weights and head per stage; not with method full).",
    )
    replay_k: int = Field(100, ge=1, description="replay: training examples kept per earlier stage (reservoir sample).")
    ewc_lambda: float = Field(
        1e4,
        ge=0,
        description="ewc: weight lambda of the penalty (1 weighs it as the quadratic estimate of the earlier tasks' "
        "loss increase; far too weak in practice: see the README's measured runs).",
    )
    fisher_batches: int = Field(
        8,
        ge=1,
        description="ewc: each earlier stage's diagonal Fisher is averaged over its first fisher_batches x "
        "train.batch_size training examples (one gradient per example).",
    )
    lwf_weight: float = Field(1.0, ge=0, description="lwf: weight of the distillation term of every earlier head.")
    lwf_temperature: float = Field(2.0, gt=0, description="lwf: softmax temperature T of both models' outputs.")


def load(path: str | None, overrides: list[str]) -> tuple[config_mod.RunConfig, ContinualConfig]:
    """The shared RunConfig and the continual section (``continual.*`` overrides go to the section)."""
    source = str(path or "config")
    raw = config_mod._read_yaml(Path(path)) if path else {}
    section = raw.pop("continual", None) or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: continual: must be a mapping (stages, strategy, ...)")
    run_overrides = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if key.startswith("continual.") and sep:
            section[key[len("continual.") :]] = config_mod.parse_override_value(value)
        else:
            run_overrides.append(item)
    for item in run_overrides:
        config_mod._apply_override(raw, item)
    if "task" in raw:
        raise ConfigError(f"{source}: task: the stages give the tasks (continual.stages[i].task); remove task:")
    cc = validate(section, source)
    raw["task"] = {"name": "multitask", "tasks": [m.model_dump() for m in cc.stages]}
    cfg = config_mod.validate(raw, source=source)  # every stage's task and data checked here, before any work
    if cc.strategy == "adapters" and cfg.method.name == "full":
        raise ConfigError(
            f"{source}: continual.strategy=adapters trains method weights per stage: choose a PEFT method"
        )
    return cfg, cc


def validate(section: dict, source: str) -> ContinualConfig:
    try:
        return ContinualConfig.model_validate(section)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                close = difflib.get_close_matches(key, list(ContinualConfig.model_fields), n=1)
                problems.append(
                    f"continual.{key}: unknown key" + (f"; did you mean continual.{close[0]}?" if close else "")
                )
            else:
                problems.append(f"continual.{key}: {err['msg'].removeprefix('Value error, ')}")
        raise ConfigError(f"{source}: " + "; ".join(problems)) from None


def stage_config(cfg: config_mod.RunConfig, cc: ContinualConfig, index: int) -> config_mod.RunConfig:
    """Stage ``index``'s run config: a multitask run over the stages so far (adapters: that stage alone)."""
    first = index if cc.strategy == "adapters" else 0
    raw = cfg.model_dump(mode="json")
    raw["task"]["tasks"] = raw["task"]["tasks"][first : index + 1]
    raw["output_dir"] = str(stage_dir(cfg, cc, index))
    return config_mod.validate(raw, source=f"continual.stages[{index}] ({cc.stages[index].name})")


def stage_dir(cfg: config_mod.RunConfig, cc: ContinualConfig, index: int) -> Path:
    return Path(cfg.output_dir) / f"{index:02d}-{cc.stages[index].name}"


def run(path: str | None, overrides: list[str], *, quiet: bool = False, log=print, callbacks=()) -> dict:
    """Train every stage in turn into output_dir (resuming an interrupted run); returns continual.json's content.
    ``callbacks`` join every stage's loop."""
    from tunelab.recipes import continual_stage, finetune

    cfg, cc = load(path, overrides)
    out = Path(cfg.output_dir)
    check_saved(out, cfg, cc)
    rows = []
    for i, stage in enumerate(cc.stages):
        scfg = stage_config(cfg, cc, i)
        folder = Path(scfg.output_dir)
        if (folder / "metrics.json").is_file():
            log(f"continual: stage {i} ({stage.name}) finished earlier, reading {folder}")
        else:
            log(f"continual: stage {i} ({stage.name}), strategy {cc.strategy}")
            previous = stage_dir(cfg, cc, i - 1) if i and cc.strategy != "adapters" else None
            stage_ext = continual_stage.Stage(cc, previous)
            finetune.run(scfg, quiet=quiet, log=log, callbacks=callbacks, extension=stage_ext)
        rows.append(matrix_row(cfg, cc, i))
    result = summary(cfg, cc, rows)
    (out / RESULTS).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    write_report(out, result, log)
    return result


def check_saved(out: Path, cfg: config_mod.RunConfig, cc: ContinualConfig) -> None:
    """Write continual.yaml (the whole resolved config), or refuse to continue a folder started with another one."""
    text = yaml.safe_dump({**cfg.model_dump(mode="json"), "continual": cc.model_dump(mode="json")}, sort_keys=False)
    saved = out / SAVED
    if saved.is_file():
        if saved.read_text(encoding="utf-8") != text:
            raise TunelabError(
                f"{out}: holds a continual run started with another config ({saved}); rerun with that config to "
                "resume, or choose another output_dir"
            )
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TunelabError(f"{out}: exists and is not a continual run folder; choose another output_dir")
    out.mkdir(parents=True, exist_ok=True)
    saved.write_text(text, encoding="utf-8")


def matrix_row(cfg: config_mod.RunConfig, cc: ContinualConfig, index: int) -> list[float | None]:
    """Every task's dev score after stage ``index`` (None for tasks not seen yet); adapters read each earlier task
    from its own stage, whose weights nothing trained since."""
    from tunelab.tasks import TASKS

    row: list[float | None] = []
    for j, stage in enumerate(cc.stages):
        if j > index:
            row.append(None)
            continue
        folder = stage_dir(cfg, cc, j if cc.strategy == "adapters" else index)
        dev = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))["dev"]["tasks"][stage.name]
        kind = TASKS["multitask"].member_config(cfg, stage.name).task.name
        row.append(dev[TASKS[kind].metric(None).name])
    return row


def summary(cfg: config_mod.RunConfig, cc: ContinualConfig, rows: list[list[float | None]]) -> dict:
    from tunelab.training.continual import backward_transfer, forgetting

    return {
        "strategy": cc.strategy,
        "tasks": [s.name for s in cc.stages],
        "stages": [str(stage_dir(cfg, cc, i)) for i in range(len(cc.stages))],
        "matrix": rows,
        "average_forgetting": forgetting(rows),
        "backward_transfer": backward_transfer(rows),
        "final_average": sum(rows[-1]) / len(rows[-1]),
    }


def write_report(out: Path, result: dict, log) -> None:
    """report.md (the matrix, forgetting, BWT) and forgetting.png (the matrix as a heat map)."""
    names = result["tasks"]
    lines = [
        f"# Continual learning: {result['strategy']}",
        "",
        "Dev score of every task (columns) after each stage (rows); each task's default metric.",
        "",
        "| after stage | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for i, row in enumerate(result["matrix"]):
        cells = ["" if v is None else f"{v:.4f}" for v in row]
        lines.append(f"| {i} {names[i]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Average forgetting: {result['average_forgetting']:.4f}; backward transfer: {result['backward_transfer']:+.4f}; "
        f"final average: {result['final_average']:.4f}.",
    ]
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        plot(out / PLOT, names, result["matrix"])
    except ImportError as exc:
        log(f"continual: no plot ({exc})")


def plot(path: Path, names: list[str], matrix: list[list[float | None]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    data = np.array([[np.nan if v is None else v for v in row] for row in matrix])
    fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(names), 1.2 + 0.9 * len(names)))
    ax.imshow(data, vmin=0, vmax=1, cmap="viridis")
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            if v is not None:
                ax.text(j, i, f"{v:.3f}", ha="center", va="center", color="white" if v < 0.6 else "black")
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), [f"after {n}" for n in names])
    ax.set_title("dev score per task after each stage")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
