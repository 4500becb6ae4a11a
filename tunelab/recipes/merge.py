"""`tunelab merge RUN_DIR OUT_DIR`: write a trained run as a plain HF model directory (weights + tokenizer).

Mergeable methods (LoRA family, IA3) fold their update into the base weights; methods whose
weights are the model's own (full, freeze, bitfit) are written as they are. Adapters that
add computation (bottleneck adapters, prompt methods) cannot become a plain model: they load
back through tunelab (``runs.load_run``), and merging them is refused with that advice.
"""

from __future__ import annotations

from pathlib import Path

from tunelab import runs
from tunelab.errors import TunelabError
from tunelab.methods import METHODS


def run(run_dir: str | Path, out_dir: str | Path, log=print) -> Path:
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TunelabError(f"{out}: exists and is not empty; choose an empty or new folder (nothing was written)")
    runs.check_writable_dir(out, "OUT_DIR")  # before the model loads
    from tunelab.export import formats

    fmt = formats.read(runs.check_run_dir(Path(run_dir)))["format"]
    if fmt != formats.METHOD:
        raise TunelabError(
            f"{run_dir}: is a {fmt} run (made by quantize/prune/export), not a training run; nothing to merge: "
            "eval, predict, generate and serve load it as it is"
        )
    runs.check_single_model(Path(run_dir), "merge")
    loaded = runs.load_run(run_dir)
    method = METHODS[loaded.cfg.method.name]
    model = plain_model(loaded, run_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    loaded.tokenizer.save_pretrained(str(out))
    log(
        f"wrote a plain {type(model).__name__} to {out} ({loaded.cfg.method.name} {'merged' if method.MERGEABLE else 'as trained'})"
    )
    return out


def plain_model(loaded: runs.LoadedRun, run_dir: str | Path):
    """The run's model as a plain transformers model: a mergeable method folded in, full/freeze/bitfit as trained.

    Methods that add layers or inputs (bottleneck adapters, prompt methods) cannot become one: TunelabError.
    """
    method = METHODS[loaded.cfg.method.name]
    model = method.merge(loaded.model) if method.MERGEABLE else loaded.model
    _, plain, _ = runs.build_base(loaded.cfg, loaded.labels)
    extra = set(model.state_dict()) ^ set(plain.state_dict())
    if extra:
        raise TunelabError(
            f"{run_dir}: method '{loaded.cfg.method.name}' adds layers or inputs that cannot be folded into the base weights "
            f"(e.g. {sorted(extra)[0]}); load it with tunelab (predict/eval/serve read the run folder directly)"
        )
    return model
