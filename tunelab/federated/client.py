"""One client's local training in one round: tunelab's own fine-tuning run, through ``finetune.Extension``.

The client's run is an ordinary run folder (``clients/client-K/round-R/``: config, metrics.jsonl, report) whose
splits are the client's own rows (held in memory; never written anywhere), whose trainable tensors start from the
global ones the server sent, and (FedProx) whose objective adds the proximal term towards them. Nothing here
imports Flower: the ClientApp (apps.py) wraps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunelab import config as config_mod
from tunelab.recipes import finetune

UPDATE = "update.safetensors"  # the tensors the client sent (its own disk): a resumed round reuses them


@dataclass
class LocalResult:
    """What one client's round produced: its trainable tensors (numpy, by plain parameter name), training rows
    and local metrics (final loss, metrics on its held-out rows)."""

    weights: dict
    rows: int
    metrics: dict


class ClientRound(finetune.Extension):
    """The federated client's additions to a fine-tuning run."""

    def __init__(self, rows: dict[str, list], labels: list[str] | None, start: dict, mu: float):
        self.rows, self.labels, self.start, self.mu = rows, labels, start, mu
        self.model = None
        self.train_rows = 0

    def splits(self, cfg, task, log) -> dict[str, list]:
        return {name: list(rows) for name, rows in self.rows.items()}

    def label_space(self, task, rows: list, source: str) -> list[str] | None:
        return self.labels  # the federation's: a client may hold one class only

    def adapt(self, setup: finetune.Setup) -> None:
        import torch

        from tunelab.training.loop import load_weights
        from tunelab.training.parts import plain_name
        from tunelab.training.proximal import with_proximal

        load_weights(setup.model, {k: torch.from_numpy(v.copy()) for k, v in self.start.items()})
        self.model = setup.model
        self.train_rows = len(setup.prepared.features["train"])
        if self.mu > 0:  # FedProx: pull every trainable tensor towards the global one this round started from
            pairs = [
                (p, torch.from_numpy(self.start[plain_name(n)].copy()).float())
                for n, p in setup.model.named_parameters()
                if p.requires_grad
            ]
            setup.prepared.objective = with_proximal(setup.prepared.objective, pairs, self.mu)

    def local_weights(self) -> dict:
        """The trained tensors (numpy copies), read after the run finished."""
        from tunelab.training.parts import trainable_weights

        return {k: v.detach().cpu().float().numpy().copy() for k, v in trainable_weights(self.model).items()}


def client_config(cfg: config_mod.RunConfig, run_dir: Path, client: int, round_: int, local_steps: int, seed: int):
    """The config of client ``client``'s run in round ``round_``: the run's model, method, task and optimiser; its own
    folder; ``local_steps`` steps evaluated once at the end (so the weights sent are the last ones); a seed per
    client and round (other batches each round); no trackers."""
    c = cfg.model_copy(deep=True)
    c.output_dir = str(run_dir / "clients" / f"client-{client}" / f"round-{round_:03d}")
    c.data.train = f"{cfg.data.train} (federated partition: client {client})"
    c.data.dev = f"{cfg.data.train} (federated partition: client {client}, held out)"
    c.data.test = None
    c.data.max_train_rows = None
    c.data.max_dev_rows = None
    c.train.max_steps = local_steps
    c.train.eval_every = local_steps
    c.train.early_stopping_patience = None
    c.train.keep_checkpoints = "none"
    c.train.seed = seed + 1000 * round_ + client
    c.tracking.backends = []
    c.analysis.fit_temperature = False  # one client's weights are not what predict uses; the server fits the global one
    return c


def train(cfg: config_mod.RunConfig, rows: dict[str, list], start: dict, mu: float, log) -> LocalResult:
    """Run the client's local training (tunelab's one loop, via finetune.run) from the global tensors ``start``.

    ``rows`` holds the client's ``train`` and ``dev`` rows and the federation's ``labels``."""
    import json

    from safetensors.numpy import save_file

    ext = ClientRound({"train": rows["train"], "dev": rows["dev"]}, rows["labels"], start, mu)
    final = finetune.run(cfg, quiet=True, log=log, extension=ext)
    metrics = {f"local_dev_{k}": float(v) for k, v in final["dev"].items() if isinstance(v, (int, float))}
    loss = _last_loss(Path(cfg.output_dir))
    if loss is not None:
        metrics["local_train_loss"] = loss
    result = LocalResult(ext.local_weights(), ext.train_rows, metrics)
    out = Path(cfg.output_dir)
    save_file(result.weights, str(out / UPDATE), metadata={"rows": str(result.rows), "metrics": json.dumps(metrics)})
    return result


def reload(run_dir: Path) -> LocalResult:
    """The result a client's finished round saved (a resumed federated run does not train that round again)."""
    import json

    from safetensors import safe_open
    from safetensors.numpy import load_file

    with safe_open(str(run_dir / UPDATE), "np") as f:
        meta = f.metadata()
    return LocalResult(load_file(str(run_dir / UPDATE)), int(meta["rows"]), json.loads(meta["metrics"]))


def _last_loss(run_dir: Path) -> float | None:
    """The last training loss the client's metrics.jsonl recorded."""
    import json

    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    loss = None
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if "loss" in record:
            loss = float(record["loss"])
    return loss
