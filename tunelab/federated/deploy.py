"""`tunelab federated` deployed on Flower: the ServerApp and ClientApp a SuperLink and its SuperNodes run.

``flwr run APP_DIR CONNECTION`` ships a Flower app project (``examples/federated/flower-app/pyproject.toml``) whose
components are ``tunelab.federated.deploy:server`` and ``:client``; tunelab itself must be installed on the
SuperLink's machine and on every SuperNode's. The app's run config names the tunelab config (``config``, a path
valid on every machine) and its overrides (``overrides``, one string of ``key=value`` words). The server runs the
same federation as `tunelab federated` (rounds, strategies, DP, evaluation on its ``data.dev``, resume, the run
folder in ``output_dir``) over Flower's Grid to the SuperNodes, SecAgg+ included (``federated.secure_aggregation``). Each SuperNode names its client with node config
``partition-id`` and holds either its own training file (``data-file``) or ``data.train`` itself, of which it takes
partition ``partition-id`` of ``federated.clients`` exactly as the simulation deals them (``num-partitions``, when
given, must equal it); its per-round run folders go under ``output-dir`` (default: the config's ``output_dir``).
"""

from __future__ import annotations

import functools
import shlex
from pathlib import Path

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from tunelab.errors import TunelabError
from tunelab.federated.flower import PARTITION, train_reply

server = ServerApp()


def _config(context: Context) -> tuple[str, list[str]]:
    """The tunelab config path and overrides from the app's run config."""
    run_config = context.run_config
    if "config" not in run_config:
        raise TunelabError(
            "the Flower app's run config has no 'config' (the tunelab config file): flwr run APP CONNECTION "
            "--run-config \"config='/path/to/federated.yaml'\""
        )
    return str(run_config["config"]), shlex.split(str(run_config.get("overrides", "")))


@server.main()
def _serve(grid: Grid, context: Context) -> None:
    from tunelab.recipes import federated

    path, overrides = _config(context)
    federated.run(path, overrides, quiet=True, log=lambda m: print(m, flush=True), grid=grid)


@functools.lru_cache(maxsize=4)
def _node(path: str, overrides: tuple[str, ...], node: tuple[tuple[str, str], ...]):
    """This SuperNode's side of the federation (config, its rows), built once per process."""
    from tunelab.models import load as model_load
    from tunelab.recipes import federated, finetune
    from tunelab.tasks import TASKS

    node_config = dict(node)
    cfg, fed = federated.load(path, list(overrides))
    if PARTITION not in node_config:
        raise TunelabError(f"this SuperNode has no node config {PARTITION} (flower-supernode --node-config ...)")
    k = int(node_config[PARTITION])
    if "output-dir" in node_config:
        cfg.output_dir = str(node_config["output-dir"])
    task = TASKS[cfg.task.name]
    cfg = finetune.resolve(cfg, task)
    cfg = finetune.fit_max_length(
        cfg, model_load.resolve(cfg.model.name, cfg.model.gguf_file, cfg.model.revision), print
    )
    cfg, _ = finetune.choose_precision(cfg)
    federation = federated.Federation(cfg, fed, task, Path(cfg.output_dir), lambda m: print(m, flush=True))
    federation.client_lines = False
    if "data-file" in node_config:
        federation.read_node_file(k, str(node_config["data-file"]))
    else:
        parts = int(node_config.get("num-partitions", fed.clients))
        if parts != fed.clients or not 0 <= k < fed.clients:
            raise TunelabError(
                f"node config {PARTITION}={k} num-partitions={parts}: the config deals data.train into "
                f"federated.clients={fed.clients} partitions (0..{fed.clients - 1})"
            )
        federation.read_data()
    return federation


def _clip_when_asked(msg: Message, context: Context, call_next) -> Message:
    """Flower's fixedclipping_mod when the server's DP wrapper sends a clipping norm (a DP run); else nothing."""
    from flwr.clientapp.mod import fixedclipping_mod
    from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

    if msg.has_content() and KEY_CLIPPING_NORM in msg.content.config_records.get("config", {}):
        return fixedclipping_mod(msg, context, call_next)
    return call_next(msg, context)


client = ClientApp(mods=[_clip_when_asked])


@client.train()
def _train(msg: Message, context: Context) -> Message:
    path, overrides = _config(context)
    node = tuple(sorted((str(k), str(v)) for k, v in context.node_config.items()))
    federation = _node(path, tuple(overrides), node)
    if "config" not in msg.content.config_records:  # SecAgg+'s exchanges: Flower's legacy message format
        return _secagg_app(path, tuple(overrides), node)(msg, context)
    return train_reply(msg, int(context.node_config[PARTITION]), federation.train_client)


@functools.lru_cache(maxsize=4)
def _secagg_app(path: str, overrides: tuple[str, ...], node: tuple[tuple[str, str], ...]) -> ClientApp:
    """This SuperNode's SecAgg+ client (legacy NumPyClient behind secaggplus_mod), built once per process."""
    from tunelab.federated import secagg

    federation = _node(path, overrides, node)
    if federation.fed.secure_aggregation is None:
        raise TunelabError(
            "the server runs SecAgg+ but this SuperNode's config has no federated.secure_aggregation: both must read "
            "the same config and overrides"
        )
    return secagg.client_app(federation.train_client, federation.fed.secure_aggregation)
