"""Experiment-tracker back-ends besides metrics.jsonl: TensorBoard, MLflow (file store) and Trackio (local).

The loop knows none of them: it hands every metrics record to its callbacks (``on_log``), and ``Tracking`` is the
one callback that fans each record out to the configured backends. A backend implements ``Tracker``: ``start``
(hyper-parameters, the step a resumed run continues from), ``log`` (scalars at a step) and ``finish`` (final
metrics, report files as artifacts, outcome). Each backend's package is imported only when it is configured.
All three work offline: TensorBoard event files go to ``<run>/tensorboard``; MLflow writes a file store (default
``<runs parent>/mlruns``, shared by sibling runs so the MLflow UI compares them); Trackio writes its local SQLite
store ($TRACKIO_DIR or ~/.cache/huggingface/trackio; never a Space unless the user's environment asks for one).
"""

from __future__ import annotations

import json
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Literal, Protocol

from pydantic import Field

from tunelab.errors import ConfigError
from tunelab.schema import Strict
from tunelab.training.loop import Callback

STATE_FILE = "tracking.json"  # backend run ids, so a resumed run continues the same tracked run


class Config(Strict):
    """The ``tracking:`` config section."""

    backends: list[Literal["tensorboard", "mlflow", "trackio"]] = Field(
        default_factory=list,
        description="Trackers to log to besides metrics.jsonl: any of tensorboard, mlflow, trackio (all offline).",
    )
    project: str = Field("tunelab", description="MLflow experiment / Trackio project name the run is logged under.")
    run_name: str | None = Field(None, description="Name of the run in the trackers; null = the run folder's name.")
    tensorboard_dir: str | None = Field(None, description="TensorBoard log folder; null = <output_dir>/tensorboard.")
    mlflow_uri: str | None = Field(
        None,
        description="MLflow tracking URI; null = $MLFLOW_TRACKING_URI, else a file store <output_dir parent>/mlruns.",
    )
    trackio_dir: str | None = Field(
        None, description="Trackio's local store; null = $TRACKIO_DIR, else ~/.cache/huggingface/trackio."
    )


class Tracker(Protocol):
    """What a tracking backend implements."""

    def start(self, params: dict, resume_step: int) -> None: ...
    def log(self, step: int, values: dict[str, float]) -> None: ...
    def finish(self, final: dict[str, float], step: int, artifacts: list[Path], status: str) -> None: ...


def flatten(d: dict, prefix: str = "") -> dict:
    """{"train": {"lr": 0.1}} -> {"train.lr": 0.1}; lists and None become strings (trackers take scalars)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v if isinstance(v, (int, float, str, bool)) else json.dumps(v)
    return out


def scalars(record: dict) -> dict[str, float]:
    """The finite numbers of a metrics record, without its step."""
    return {
        k: float(v)
        for k, v in record.items()
        if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
    }


class TensorBoard:
    def __init__(self, folder: Path):
        self.folder = folder

    def start(self, params: dict, resume_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step hides events a killed run wrote past its last checkpoint; the resumed run logs them again
        self.writer = SummaryWriter(str(self.folder), purge_step=resume_step + 1 if resume_step else None)
        self.params = params
        if not resume_step:
            self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in params.items()), 0)

    def log(self, step: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)

    def finish(self, final: dict[str, float], step: int, artifacts: list[Path], status: str) -> None:
        for path in artifacts:
            if path.suffix == ".md":
                self.writer.add_text(path.stem, path.read_text(encoding="utf-8"), 0)
        if final:
            self.log(step, final)
            hparams = {k: v for k, v in self.params.items() if isinstance(v, (int, float, str, bool))}
            self.writer.add_hparams(hparams, {f"hparam/{k}": v for k, v in final.items()}, run_name=".")
        self.writer.close()


class MLflow:
    def __init__(self, uri: str, experiment: str, name: str, state: dict):
        self.uri, self.experiment, self.name, self.state = uri, experiment, name, state

    def start(self, params: dict, resume_step: int) -> None:
        if self.uri.startswith("file:") or "://" not in self.uri:
            # MLflow 3 keeps its file store in maintenance mode behind this switch; a file store is what was asked for
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.uri)
        run_id = self.state.get("mlflow_run_id")
        if run_id is None:
            exp = self.client.get_experiment_by_name(self.experiment)
            exp_id = exp.experiment_id if exp else self.client.create_experiment(self.experiment)
            run_id = self.client.create_run(exp_id, run_name=self.name).info.run_id
            self.state["mlflow_run_id"] = run_id
            items = [Param(k[:250], str(v)[:6000]) for k, v in params.items()]
            for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
                self.client.log_batch(run_id, params=items[i : i + 100])
        else:
            self.client.update_run(run_id, status="RUNNING")
        self.run_id = run_id

    def log(self, step: int, values: dict[str, float]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])

    def finish(self, final: dict[str, float], step: int, artifacts: list[Path], status: str) -> None:
        if final:
            self.log(step, final)
        for path in artifacts:
            self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status)


class Trackio:
    def __init__(self, project: str, name: str, folder: str | None):
        self.project, self.name, self.folder = project, name, folder

    def start(self, params: dict, resume_step: int) -> None:
        import sys

        if self.folder:
            loaded = sys.modules.get("trackio.utils")
            if loaded is not None and str(loaded.TRACKIO_DIR) != str(Path(self.folder)):
                raise ConfigError(
                    f"tracking.trackio_dir: trackio is already loaded in this process with {loaded.TRACKIO_DIR}"
                )
            os.environ["TRACKIO_DIR"] = str(Path(self.folder))  # trackio reads its store location once, at import
        import trackio

        self.trackio = trackio
        trackio.init(project=self.project, name=self.name, config=params, resume="allow", embed=False)

    def log(self, step: int, values: dict[str, float]) -> None:
        self.trackio.log(values, step=step)

    def finish(self, final: dict[str, float], step: int, artifacts: list[Path], status: str) -> None:
        if final:
            self.trackio.log(final, step=step)
        self.trackio.finish()


def _default_mlflow_uri(run_dir: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or (run_dir.resolve().parent / "mlruns").as_uri()


def build(cfg: Config, run_dir: Path, state: dict) -> list:
    name = cfg.run_name or run_dir.name
    makers = {
        "tensorboard": lambda: TensorBoard(
            Path(cfg.tensorboard_dir) if cfg.tensorboard_dir else run_dir / "tensorboard"
        ),
        "mlflow": lambda: MLflow(cfg.mlflow_uri or _default_mlflow_uri(run_dir), cfg.project, name, state),
        "trackio": lambda: Trackio(cfg.project, name, cfg.trackio_dir),
    }
    return [makers[b]() for b in dict.fromkeys(cfg.backends)]


class Tracking(Callback):
    """The loop-facing side: a callback whose ``on_log`` sends each metrics record to every backend."""

    def __init__(self, trackers: list):
        self.trackers = trackers

    def on_log(self, state, record: dict) -> None:
        values = scalars(record)
        if values:
            for t in self.trackers:
                t.log(int(record["step"]), values)

    def finish(self, final: dict, artifacts: list[Path], step: int) -> None:
        """Final dev/test metrics (as final/<split>/<name> at ``step``) and report files as artifacts."""
        flat = {
            f"final/{split}/{k}": v for split in ("dev", "test") for k, v in scalars(final.get(split) or {}).items()
        }
        for t in self.trackers:
            t.finish(flat, step, [p for p in artifacts if p.is_file()], "FINISHED")
        self.trackers = []


@contextmanager
def tracking(
    cfg: Config, run_dir: Path, params: dict, resume_step: int, log: Callable[[str], None]
) -> Iterator[Tracking]:
    """Start the configured trackers; a run that raises closes them as failed (or killed on Ctrl-C)."""
    path = Path(run_dir) / STATE_FILE
    state = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    trackers = build(cfg, Path(run_dir), state)
    for t in trackers:
        t.start(flatten(params), resume_step)
    if trackers:
        path.write_text(json.dumps(state), encoding="utf-8")
        log(f"tracking: {', '.join(cfg.backends)}")
    fan = Tracking(trackers)
    try:
        yield fan
    except BaseException as exc:
        for t in fan.trackers:
            t.finish({}, 0, [], "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
