"""Experiment-tracker back-ends besides metrics.jsonl: TensorBoard, MLflow (file store) and Trackio (local).

Each is a ``tunelab.training.tracking.Tracker``: the loop hands it every record (``start``, ``log``,
``finish(status)``) and the recipe adds the final metrics and report files (``summary``). The ``tracking:``
config section selects them; ``build`` makes the selected ones, given the hyper-parameters the recipe wants
recorded. Each back-end's package is imported only when it is configured. All three work offline:
TensorBoard event files go to ``<run>/tensorboard``; MLflow writes a file store (default
``<runs parent>/mlruns``, shared by sibling runs so the MLflow UI compares them); Trackio writes its local
SQLite store ($TRACKIO_DIR or ~/.cache/huggingface/trackio; never a Space unless the user's environment asks
for one).

``finish`` always closes what a back-end holds open (so an interrupted or failed run is recorded as such even
if nothing follows); ``summary`` reopens the same tracked run to add the final numbers and the report.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Literal

from pydantic import Field

from tunelab.errors import ConfigError
from tunelab.schema import Strict
from tunelab.training.tracking import Tracker

STATE_FILE = "tracking.json"  # back-end run ids, so a resumed run continues the same tracked run

# the loop's outcomes (Tracker.finish) -> MLflow run statuses
MLFLOW_STATUS = {"finished": "FINISHED", "stopped_early": "FINISHED", "interrupted": "KILLED", "failed": "FAILED"}


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


def final_scalars(metrics: dict) -> dict[str, float]:
    """The final dev/test numbers of a run as ``final/<split>/<name>``."""
    return {f"final/{split}/{k}": v for split in ("dev", "test") for k, v in scalars(metrics.get(split) or {}).items()}


class _Backend(Tracker):
    """What every back-end shares: the hyper-parameters to record and the last step seen (for final values)."""

    def __init__(self, params: dict):
        self.params = flatten(params)
        self.step = 0

    def start(self, run_dir: Path, resumed_step: int) -> None:
        self.step = resumed_step
        self.open(Path(run_dir), resumed_step)

    def log(self, record: dict) -> None:
        self.step = max(self.step, int(record["step"]))
        values = scalars(record)
        if values:
            self.write(int(record["step"]), values)

    def open(self, run_dir: Path, resumed_step: int) -> None:
        raise NotImplementedError

    def write(self, step: int, values: dict[str, float]) -> None:
        raise NotImplementedError


class TensorBoard(_Backend):
    """Scalars per step, the config as text, final metrics as hparams and the report as text."""

    def __init__(self, folder: Path | None, params: dict):
        super().__init__(params)
        self.folder = folder
        self.writer = None

    def open(self, run_dir: Path, resumed_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.folder = self.folder or run_dir / "tensorboard"
        # purge_step hides events a killed run wrote past its last checkpoint; the resumed run logs them again
        self.writer = SummaryWriter(str(self.folder), purge_step=resumed_step + 1 if resumed_step else None)
        if not resumed_step:
            self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in self.params.items()), 0)

    def write(self, step: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)

    def finish(self, status: str) -> None:
        if self.writer is not None:
            self.writer.close()

    def summary(self, metrics: dict, files: list[Path]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(self.folder))  # a new event file next to the training ones
        final = final_scalars(metrics)
        for k, v in final.items():
            writer.add_scalar(k, v, self.step)
        for path in files:
            if path.suffix == ".md":
                writer.add_text(path.stem, path.read_text(encoding="utf-8"), 0)
        if final:
            hparams = {k: v for k, v in self.params.items() if isinstance(v, (int, float, str, bool))}
            writer.add_hparams(hparams, {f"hparam/{k}": v for k, v in final.items()}, run_name=".")
        writer.close()


class MLflow(_Backend):
    """Params, metrics per step, final metrics and the report files as artifacts; a resumed run continues its
    MLflow run (its id is kept in ``<run>/tracking.json``)."""

    def __init__(self, uri: str | None, experiment: str, name: str | None, params: dict):
        super().__init__(params)
        self.uri, self.experiment, self.name = uri, experiment, name
        self.run_id = None

    def open(self, run_dir: Path, resumed_step: int) -> None:
        self.uri = self.uri or os.environ.get("MLFLOW_TRACKING_URI") or (run_dir.resolve().parent / "mlruns").as_uri()
        if self.uri.startswith("file:") or "://" not in self.uri:
            # MLflow 3 keeps its file store in maintenance mode behind this switch; a file store is what was asked for
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.uri)
        path = run_dir / STATE_FILE
        state = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        self.run_id = state.get("mlflow_run_id")
        if self.run_id is not None:
            self.client.update_run(self.run_id, status="RUNNING")
            return
        exp = self.client.get_experiment_by_name(self.experiment)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(self.experiment)
        self.run_id = self.client.create_run(exp_id, run_name=self.name or run_dir.name).info.run_id
        path.write_text(json.dumps({**state, "mlflow_run_id": self.run_id}), encoding="utf-8")
        items = [Param(k[:250], str(v)[:6000]) for k, v in self.params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def write(self, step: int, values: dict[str, float]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])

    def finish(self, status: str) -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, MLFLOW_STATUS.get(status, "FAILED"))

    def summary(self, metrics: dict, files: list[Path]) -> None:
        final = final_scalars(metrics)
        if final:
            self.write(self.step, final)
        for path in files:
            self.client.log_artifact(self.run_id, str(path))


class Trackio(_Backend):
    """Config, metrics per step and final metrics in Trackio's local store."""

    def __init__(self, project: str, name: str | None, folder: str | None, params: dict):
        super().__init__(params)
        self.project, self.name, self.folder = project, name, folder

    def open(self, run_dir: Path, resumed_step: int) -> None:
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
        self.name = self.name or run_dir.name
        trackio.init(project=self.project, name=self.name, config=self.params, resume="allow", embed=False)

    def write(self, step: int, values: dict[str, float]) -> None:
        self.trackio.log(values, step=step)

    def finish(self, status: str) -> None:
        self.trackio.finish()

    def summary(self, metrics: dict, files: list[Path]) -> None:
        final = final_scalars(metrics)
        if final:
            self.trackio.init(project=self.project, name=self.name, resume="must", embed=False)
            self.trackio.log(final, step=self.step)
            self.trackio.finish()


def build(cfg: Config, params: dict) -> list[Tracker]:
    """The trackers ``cfg.backends`` selects (each once), recording ``params`` as the run's hyper-parameters."""
    makers = {
        "tensorboard": lambda: TensorBoard(Path(cfg.tensorboard_dir) if cfg.tensorboard_dir else None, params),
        "mlflow": lambda: MLflow(cfg.mlflow_uri, cfg.project, cfg.run_name, params),
        "trackio": lambda: Trackio(cfg.project, cfg.run_name, cfg.trackio_dir, params),
    }
    return [makers[b]() for b in dict.fromkeys(cfg.backends)]
