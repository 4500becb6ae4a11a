"""`tunelab federated CONFIG`: federated fine-tuning on Flower; clients train adapters on data that never leaves them.

config -> server dev split + client partitions -> Flower ServerApp (FedAvg/FedProx, optional central DP) <-> one
ClientApp per client, each round a tunelab fine-tuning run on the client's rows (the one loop, via
``finetune.Extension``) from the global trainable tensors -> the averaged tensors, evaluated on the server's dev set
after every round -> the final global model in the run folder (``model/``: usable by eval, predict, serve), with
``rounds.jsonl`` (per round: server dev metrics, each client's local metrics, bytes sent), ``federated.json`` and
a report with per-round curves.

Resume: after every round the global tensors and the privacy accountant are saved (``federated/``); rerunning the
same command continues with the next round, and a client interrupted mid-round resumes its own run folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from tunelab import runs, runstate
from tunelab.errors import TunelabError
from tunelab.federated import client as client_mod
from tunelab.federated import partition
from tunelab.federated.config import SAVED_CONFIG, FederatedConfig, load
from tunelab.recipes import finetune
from tunelab.tasks import TASKS
from tunelab.training import checkpoint

STATE_DIR = "federated"
WEIGHT_KEY = "num-examples"  # a client's training rows in its metrics (flower.WEIGHT_KEY; Flower is imported lazily)
ROUNDS = "rounds.jsonl"


def run(
    path: str | None, overrides: list[str], *, quiet: bool = False, log=print, resume_anyway: bool = False, grid=None
):
    """Federate into the config's output_dir (resuming after the last finished round); returns the final metrics.

    ``quiet`` drops the per-client lines (clients never show a progress bar; each round's result is logged).
    ``grid``: a Flower Grid to the clients (a deployed ServerApp's, see ``tunelab.federated.deploy``); None =
    simulate the clients in this process."""
    from tunelab.models import load as model_load

    cfg, fed = load(path, overrides)
    check_flower()
    task = TASKS[cfg.task.name]
    cfg = finetune.resolve(cfg, task)
    cfg = finetune.fit_max_length(cfg, model_load.resolve(cfg.model.name, cfg.model.gguf_file, cfg.model.revision), log)
    finetune.seed_everything(cfg.train.seed, cfg.train.threads)
    cfg, precision = finetune.choose_precision(cfg)
    run_dir = finetune.prepare_run_dir(cfg, resume_anyway, log)
    check_saved(run_dir, fed, resume_anyway, log)
    with runstate.active(run_dir, log) as session:
        session.log(f"precision: {precision.name} ({precision.reason})")
        federation = Federation(cfg, fed, task, run_dir, session.log)
        federation.client_lines = not quiet
        return federation.run(grid)


def resume_hint(output_dir: str) -> str:
    """What a rerun of an interrupted federated run does."""
    state = Path(output_dir) / STATE_DIR / "state.json"
    if not state.is_file():
        return "no round had finished, so a rerun starts from the first round (a client's run resumes its own steps)"
    done = json.loads(state.read_text(encoding="utf-8"))["round"]
    return f"resumable after round {done}: rerun the same command to continue"


def check_flower() -> None:
    """A clear error when Flower is not installed (it is an optional extra)."""
    import importlib.util

    if importlib.util.find_spec("flwr") is None:
        raise TunelabError(
            "tunelab federated needs Flower: pip install 'tunelab[federated]' (in a checkout: make setup)"
        )


def check_saved(run_dir: Path, fed: FederatedConfig, resume_anyway: bool, log) -> None:
    """Write federated.yaml, or refuse to resume a run started with another federated section."""
    saved = Path(run_dir) / SAVED_CONFIG
    now = fed.model_dump(mode="json")
    if saved.is_file():
        old = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
        diff = [f"federated.{k}: {old.get(k)!r} -> {v!r}" for k, v in now.items() if old.get(k) != v]
        if diff and not resume_anyway:
            raise TunelabError(
                f"{run_dir}: holds a federated run started with another federated section ({'; '.join(diff[:5])}); "
                "rerun with the same section to resume, add --resume-anyway, or choose another output_dir"
            )
    saved.write_text(yaml.safe_dump(now, sort_keys=False), encoding="utf-8")


class Federation:
    """The server's side of one federated run, and the simulated clients it starts."""

    def __init__(self, cfg, fed: FederatedConfig, task, run_dir: Path, log):
        self.cfg, self.fed, self.task, self.run_dir, self.log = cfg, fed, task, run_dir, log
        self.seed = fed.seed if fed.seed is not None else cfg.train.seed
        self.pending: list[dict] = []  # the clients' replies of the round being aggregated
        self.strategy = None
        self.client_lines = True  # log a line per client and round

    # ------------------------------------------------------------ data

    def read_data(self) -> None:
        """The server's dev rows, each client's (train, dev) rows, and the federation's label names."""
        cfg, fed, task = self.cfg, self.fed, self.task
        if fed.partition == "files":
            if not cfg.data.dev:
                raise TunelabError(
                    "federated.partition=files: set data.dev, the server's dev set (client files are private)"
                )
            self.dev = _rows(task, cfg, cfg.data.dev, self.log)
            pools = [_rows(task, cfg, f, self.log) for f in fed.client_files]
            for path, rows in zip(fed.client_files, pools):
                if not rows:
                    raise TunelabError(f"federated.client_files {path}: no rows")
                task.check_rows(cfg, rows, path, self.log)
        else:
            splits = finetune.read_splits(cfg, task, self.log)
            self.dev, train = splits["dev"], splits["train"]
            if fed.partition == "iid":
                parts = partition.iid(len(train), fed.clients, self.seed)
            else:
                keys = [task.stratify_key(r) for r in train]
                if any(k is None for k in keys):
                    raise TunelabError(
                        f"federated.partition=dirichlet: task {cfg.task.name} has no class labels to split by"
                    )
                parts = partition.dirichlet(keys, fed.clients, fed.alpha, self.seed)
            pools = [[train[i] for i in p] for p in parts]
        self.clients = []
        for k, pool in enumerate(pools):
            tr, dv = partition.holdout(list(range(len(pool))), fed.client_dev_fraction, self.seed + k)
            self.clients.append({"train": [pool[i] for i in tr], "dev": [pool[i] for i in dv]})
        every = [r for c in self.clients for r in c["train"]]
        self.labels = task.label_space(every, cfg.data.train if fed.partition != "files" else "federated.client_files")
        self.shares = [_label_counts(task, c["train"]) for c in self.clients]
        for k, (c, share) in enumerate(zip(self.clients, self.shares)):
            self.log(f"client {k}: {len(c['train'])} training rows, {len(c['dev'])} held out; {share}")

    # ------------------------------------------------------------ the run

    def read_server_data(self) -> None:
        """A deployed run's server holds only its dev set; the federation's label names are the dev set's."""
        cfg = self.cfg
        if not cfg.data.dev:
            raise TunelabError(
                "a deployed federated run needs data.dev, the server's dev set (the clients' data is theirs)"
            )
        self.dev = _rows(self.task, cfg, cfg.data.dev, self.log)
        self.labels = self.task.label_space(self.dev, cfg.data.dev)
        self.clients, self.shares = [], []

    def run(self, grid=None) -> dict:
        from tunelab.federated import flower
        from tunelab.methods import METHODS

        if grid is None:
            self.read_data()
        else:
            self.read_server_data()
        self.method = METHODS[self.cfg.method.name]
        self.tokenizer, model, head = runs.build_base(self.cfg, self.labels)
        self.model = self.method.apply(model, self.cfg.method, head)
        self.server = runs.LoadedRun(self.cfg, self.model, self.tokenizer, self.labels, head)
        start, done = self.restore()
        with _flower_logs_quiet():
            self.strategy = flower.build_strategy(self.fed, self.on_replies)
        if done and self.fed.dp_noise_multiplier is not None:
            self.strategy.accountant.load_state_dict(self.read_state()["accountant"])
        self.size = sum(v.nbytes for v in start.values())  # the raw tensors
        self.payload = flower.payload_bytes(flower.to_record(start))  # as Flower serialises them (+ npy headers)
        n_params = sum(v.size for v in start.values())
        self.log(
            f"federated: {self.fed.strategy}, {self.fed.clients} clients ({self.fed.sampled} per round), "
            f"{self.fed.rounds} rounds of {self.fed.local_steps} local steps; {n_params:,} trainable values "
            f"({self.size / 2**20:.2f} MiB) travel each way per client"
        )
        began = time.perf_counter()
        if done < self.fed.rounds and grid is not None:  # deployed: Flower's grid to the SuperNodes
            self.traffic = flower.CountingGrid(grid)
            self.seed_sampling(done)
            self.serve_deployed(start, done)
        elif done < self.fed.rounds:
            app, server = self.apps(start, done)
            self.traffic = flower.InProcessGrid(app, self.fed.clients)
            self.seed_sampling(done)
            with _flower_logs_quiet():
                flower.run_in_process(server, self.traffic)
        return self.finish(round(time.perf_counter() - began, 1))

    def serve_deployed(self, start: dict, done: int) -> None:
        """The rounds left over the SuperNodes: the Message-API strategy, or SecAgg+'s legacy workflow."""
        from flwr.app import Context, RecordDict
        from flwr.common.constant import SUPERLINK_NODE_ID

        from tunelab.federated import flower

        left = self.fed.rounds - done
        if self.fed.secure_aggregation is None:
            flower.serve_rounds(self.traffic, self.strategy, start, left, done, self.evaluate, self.labels)
            return
        run = self.secagg_runner(start, done, 1000.0)
        run(self.traffic, Context(self.traffic.run.run_id, SUPERLINK_NODE_ID, {}, RecordDict(), {}))

    def secagg_runner(self, start: dict, done: int, default_weight: float):
        """SecAgg+'s ``run(grid, context)`` for the rounds left (``secagg.runner``)."""
        from tunelab.federated import secagg

        sa = self.fed.secure_aggregation
        self.strategy = None  # no Message-API strategy runs; the legacy one lives in the workflow
        max_weight = sa.max_weight if sa.max_weight is not None else default_weight
        left = self.fed.rounds - done
        plan = secagg.Rounds(
            self.fed, start, sorted(start), left, done, self.evaluate, self.on_client_metrics, max_weight, self.labels
        )
        return secagg.runner(plan)

    def apps(self, start: dict, done: int):
        """Flower's (ClientApp, ServerApp) for the rounds left: the Message-API strategy (with DP when asked), or
        the SecAgg+ workflow with Flower's legacy strategies (``federated.secure_aggregation``)."""
        from tunelab.federated import flower

        left = self.fed.rounds - done
        if self.fed.secure_aggregation is None:
            app = flower.client_app(self.train_client, dp=self.fed.dp_noise_multiplier is not None)
            return app, flower.server_app(self.strategy, start, left, done, self.evaluate, self.labels)
        from tunelab.federated import secagg

        rows = float(max(len(c["train"]) for c in self.clients))  # SecAgg+ weights = training rows
        server = secagg.server_app(self.secagg_runner(start, done, rows))
        return secagg.client_app(self.train_client, self.fed.secure_aggregation), server

    def train_client(self, k: int, round_: int, start: dict, mu: float, labels: list | None = None):
        """Client ``k``'s local training in round ``round_`` (called by its ClientApp; ``labels`` as the server
        sent them are this federation's own)."""
        cfg = client_mod.client_config(self.cfg, self.run_dir, k, round_, self.fed.local_steps, self.seed)
        saved = Path(cfg.output_dir)
        if (saved / "metrics.json").is_file() and (saved / client_mod.UPDATE).is_file():
            self.log(f"round {round_}: client {k} finished this round before the interruption; reusing its update")
            return client_mod.reload(saved)
        if self.client_lines:
            rows = len(self.clients[k]["train"])
            self.log(f"round {round_}: client {k} trains {self.fed.local_steps} steps on {rows} rows")
        labels = labels if labels is not None else self.labels
        return client_mod.train(cfg, {**self.clients[k], "labels": labels}, start, mu, _silent)

    def read_node_file(self, k: int, path: str) -> None:
        """A deployed client's own training file (node config ``data-file``): its train and held-out rows."""
        pool = _rows(self.task, self.cfg, path, self.log)
        if not pool:
            raise TunelabError(f"{path}: no rows (the data-file of client {k})")
        self.task.check_rows(self.cfg, pool, path, self.log)
        tr, dv = partition.holdout(list(range(len(pool))), self.fed.client_dev_fraction, self.seed + k)
        self.clients = {k: {"train": [pool[i] for i in tr], "dev": [pool[i] for i in dv]}}
        self.labels = None  # the server sends the federation's

    def on_replies(self, contents: list) -> None:
        """Every client's reply of a round, before aggregation: its metrics (and, deployed, its bytes)."""
        self.traffic.record_replies(contents)
        self.on_client_metrics([dict(content["metrics"]) for content in contents])

    def on_client_metrics(self, metrics: list[dict]) -> None:
        self.pending = metrics

    def evaluate(self, round_: int, weights: dict) -> dict:
        """The global model of round ``round_`` on the server's dev set; records the round and saves its state."""
        import torch

        from tunelab.training.loop import load_weights

        load_weights(self.model, {k: torch.from_numpy(v.copy()) for k, v in weights.items()})
        self.model.eval()
        metrics = self.task.evaluate(self.server, self.dev, self.cfg.data.dev or "dev split", _silent)
        scalars = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        clients = sorted(self.pending, key=lambda m: m["client"]) if round_ > 0 else []
        down, sent = self.traffic.take_traffic()  # every message of the round, both ways (SecAgg+: all 4 exchanges)
        for c in clients:
            c["bytes_sent"] = sent[int(c["client"])]
        up = sum(sent.values())
        record = {
            "round": round_,
            "step": round_ * self.fed.local_steps,
            **{f"dev/{k}": v for k, v in scalars.items()},
            "bytes_down": sum(down.values()),
            "bytes_up": up,
            "clients": clients,
        }
        if (spent := _privacy(self.strategy)) is not None and round_ > 0:
            record["privacy"] = spent
        self.pending = []
        self.record(record, weights)
        self.seed_sampling(round_)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in scalars.items())
        sent = f"; {up:,} bytes up, {record['bytes_down']:,} bytes down" if round_ else " (the starting model)"
        self.log(f"round {round_}: server dev {shown}{sent}")
        return scalars

    def seed_sampling(self, done: int) -> None:
        """Flower samples each round's clients with Python's ``random``: seed it from (seed, rounds done), so a
        resumed run samples the clients an uninterrupted one would."""
        import random

        random.seed(self.seed * 100_003 + done)

    # ------------------------------------------------------------ state, resume, run folder

    def record(self, record: dict, weights: dict) -> None:
        """Append the round to rounds.jsonl and metrics.jsonl; save the global tensors and accountant (resume point)."""
        from safetensors.numpy import save_file

        state_dir = self.run_dir / STATE_DIR
        state_dir.mkdir(exist_ok=True)
        tmp = state_dir / ".global.safetensors.tmp"
        save_file({k: v for k, v in weights.items()}, str(tmp))
        tmp.replace(state_dir / "global.safetensors")
        state = {"round": record["round"]}
        if self.fed.dp_noise_multiplier is not None:
            state["accountant"] = self.strategy.accountant.state_dict()
        for name in (ROUNDS, "metrics.jsonl"):
            with open(self.run_dir / name, "a", encoding="utf-8") as f:
                shown = record if name == ROUNDS else {k: v for k, v in record.items() if k != "clients"}
                f.write(json.dumps(shown) + "\n")
        checkpoint.write_json_atomic(state_dir / "state.json", state)

    def read_state(self) -> dict:
        return json.loads((self.run_dir / STATE_DIR / "state.json").read_text(encoding="utf-8"))

    def restore(self) -> tuple[dict, int]:
        """The global tensors to start from and the rounds already done (0 and the initial tensors on a new run)."""
        from safetensors.numpy import load_file

        from tunelab.training.parts import trainable_weights

        state = self.run_dir / STATE_DIR / "state.json"
        if not state.is_file():
            for name in (ROUNDS, "metrics.jsonl"):  # a run interrupted before its first round ended starts over
                (self.run_dir / name).unlink(missing_ok=True)
            return {k: v.cpu().float().numpy().copy() for k, v in trainable_weights(self.model).items()}, 0
        done = self.read_state()["round"]
        weights = load_file(str(self.run_dir / STATE_DIR / "global.safetensors"))
        _truncate(self.run_dir, done)
        self.log(f"resuming after round {done} of {self.fed.rounds} ({self.run_dir / STATE_DIR})")
        return weights, done

    def finish(self, seconds: float) -> dict:
        """The final global model into model/, metrics.json, federated.json and the report."""
        import torch
        from safetensors.numpy import load_file

        from tunelab.evaluation import analysis
        from tunelab.federated import report
        from tunelab.methods.base import count_parameters
        from tunelab.training.loop import load_weights

        weights = load_file(str(self.run_dir / STATE_DIR / "global.safetensors"))
        load_weights(self.model, {k: torch.from_numpy(v) for k, v in weights.items()})
        self.model.eval()
        rounds = [json.loads(line) for line in (self.run_dir / ROUNDS).read_text(encoding="utf-8").splitlines()]
        last = rounds[-1]
        trainable, total = count_parameters(self.model)
        summary = {
            "strategy": self.fed.strategy,
            "rounds": self.fed.rounds,
            "clients": self.fed.clients,
            "clients_per_round": self.fed.sampled,
            "local_steps": self.fed.local_steps,
            "partition": self.fed.partition,
            "client_rows": [len(c["train"]) for c in self.clients] or [int(c[WEIGHT_KEY]) for c in last["clients"]],
            "client_labels": self.shares,
            "adapter_bytes": self.size,
            "adapter_payload_bytes": self.payload,
            "bytes_per_round": {"up": last["bytes_up"], "down": last["bytes_down"]},
            "examples_seen": self.fed.rounds * self.fed.sampled * self.fed.local_steps * self.cfg.train.batch_size,
        }
        if "privacy" in last:
            summary["privacy"] = {
                **last["privacy"],
                "noise_multiplier": self.fed.dp_noise_multiplier,
                "clipping_norm": self.fed.dp_clipping_norm,
            }
        final = {
            "dev": {k[4:]: v for k, v in last.items() if k.startswith("dev/")},
            "federated": summary,
            "steps": self.fed.rounds * self.fed.local_steps,
            "train_seconds": seconds,
            "trainable_parameters": trainable,
            "total_parameters": total,
        }
        finetune.export(self.model, self.tokenizer, self.method, self.labels, self.run_dir)
        checkpoint.write_json_atomic(self.run_dir / "federated.json", {"summary": summary, "rounds": rounds})
        checkpoint.write_json_atomic(self.run_dir / "metrics.json", final)
        analysis.after_training(self.run_dir, self.cfg, self.model, self.tokenizer, self.labels, self.dev, self.log)
        report.write(self.run_dir, self.cfg, final, rounds)
        checkpoint.fix_modes(self.run_dir)
        return final


def _rows(task, cfg, path: str, log) -> list:
    """The rows of one file as the task reads it (skipped bad rows, under data.on_error: skip, are logged)."""
    table = task.read(cfg, path)
    if table.skipped:
        log(f"{path}: skipped {len(table.skipped)} bad rows (lines {', '.join(str(n) for n, _ in table.skipped[:10])})")
    return table.rows


def _label_counts(task, rows: list) -> dict:
    """Rows per class label of a client (just the row count for tasks without class labels)."""
    keys = [task.stratify_key(r) for r in rows]
    if any(k is None for k in keys):
        return {"rows": len(rows)}
    return partition.label_counts(keys, [list(range(len(rows)))])[0]


def _privacy(strategy) -> dict | None:
    from tunelab.federated.flower import privacy_spent

    return privacy_spent(strategy)


def _truncate(run_dir: Path, done: int) -> None:
    """Drop records of rounds after ``done`` (written before an interruption lost them) from the jsonl files."""
    for name in (ROUNDS, "metrics.jsonl"):
        path = run_dir / name
        if path.is_file():
            keep = [line for line in path.read_text(encoding="utf-8").splitlines() if json.loads(line)["round"] <= done]
            path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")


class _flower_logs_quiet:
    """Flower logs every message at INFO on its own logger; tunelab logs the rounds itself, so keep Flower's to
    warnings while the run lasts."""

    def __enter__(self):
        import logging

        self.logger = logging.getLogger("flwr")
        self.level = self.logger.level
        self.logger.setLevel(logging.WARNING)

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)


def _silent(_msg: str) -> None:
    pass
