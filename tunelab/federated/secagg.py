"""Secure aggregation for `tunelab federated`: Flower's SecAgg+ protocol (``federated.secure_aggregation``).

Flower 1.42 implements SecAgg+ as a workflow of its legacy server API: ``SecAggPlusWorkflow`` runs inside
``DefaultWorkflow`` on a ``LegacyContext`` holding a ``flwr.server.strategy`` strategy, and the ClientApp wraps a
legacy ``NumPyClient`` with ``secaggplus_mod``. The Message-API strategies of ``flower.py`` have no SecAgg hook, so
this module builds that pair instead, with the same client training, server evaluation and round numbering.

Per round the protocol runs four exchanges (setup/public keys, encrypted key shares, masked vectors, unmasking). Each
client sends ``rows * tensors`` quantised to integers and masked with pairwise and private masks; the server only
ever sees the sum, from which it recovers the row-weighted average (FedAvg) up to the quantisation error. Legacy
Parameters carry tensors without names: both sides use the order ``names`` (the sorted trainable tensor names).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from flwr.app import Context
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from tunelab.errors import TunelabError
from tunelab.federated.config import FederatedConfig, SecureAggregation
from tunelab.federated.flower import PARTITION, WEIGHT_KEY


def client_app(train: Callable, sa: SecureAggregation) -> ClientApp:
    """A ClientApp (legacy NumPyClient behind Flower's ``secaggplus_mod``) whose fit calls ``train(partition,
    round, start_weights, mu, labels) -> LocalResult`` and returns the trained tensors in the order the server's
    ``names`` gives. A tensor value outside +-``clipping_range``, or more training rows than the server's
    ``max-weight``, would be clipped or overflow silently in SecAgg+'s quantiser: the client stops with an error
    naming it instead."""
    from flwr.client import NumPyClient
    from flwr.client.mod import secaggplus_mod

    class Client(NumPyClient):
        def __init__(self, partition: int):
            self.partition = partition

        def fit(self, parameters, config):
            names = str(config["names"]).split("\n")
            start = {n: np.asarray(a, dtype=np.float32) for n, a in zip(names, parameters)}
            round_ = int(config["round-offset"]) + int(config["server-round"])
            labels = [str(x) for x in config["labels"].split("\n") if x] or None
            result = train(self.partition, round_, start, float(config.get("proximal_mu", 0.0)), labels)
            out = [np.asarray(result.weights[n], dtype=np.float32) for n in names]
            for name, arr in zip(names, out):
                peak = float(np.abs(arr).max()) if arr.size else 0.0
                if peak > sa.clipping_range:
                    raise TunelabError(
                        f"client {self.partition}, round {round_}: tensor {name} holds {peak:.4g}, outside "
                        f"federated.secure_aggregation.clipping_range ({sa.clipping_range}); SecAgg+ would clip it. "
                        "Raise clipping_range (the quantisation step grows with it) or lower train.lr"
                    )
            if result.rows > float(config["max-weight"]):
                raise TunelabError(
                    f"client {self.partition}: {result.rows} training rows, above "
                    f"federated.secure_aggregation.max_weight ({config['max-weight']}); SecAgg+'s weights would "
                    "overflow: raise max_weight"
                )
            metrics = {"client": self.partition, "round": round_, **result.metrics}
            return out, result.rows, metrics

    def client_fn(context: Context):
        return Client(int(context.node_config[PARTITION])).to_client()

    return ClientApp(client_fn=client_fn, mods=[secaggplus_mod])


def server_app(run: Callable[[Grid, Context], None]) -> ServerApp:
    """A ServerApp calling ``run`` (see ``runner``) with the Grid and Context it is given."""
    app = ServerApp()

    @app.main()
    def _main(grid: Grid, context: Context) -> None:
        run(grid, context)

    return app


@dataclass
class Rounds:
    """What ``runner`` runs: FedAvg/FedProx (``fed``) for ``rounds`` rounds from ``initial`` (tensors in the order
    ``names``, which the clients are sent), numbered from ``offset + 1``; ``evaluate(round, weights)`` runs after each
    round and before the first; ``on_replies`` gets each round's client metrics; ``max_weight`` is the largest client
    weight (training rows); ``labels`` the federation's label names."""

    fed: FederatedConfig
    initial: dict
    names: list[str]
    rounds: int
    offset: int
    evaluate: Callable[[int, dict], dict]
    on_replies: Callable[[list[dict]], None]
    max_weight: float
    labels: list | None


def runner(plan: Rounds) -> Callable[[Grid, Context], None]:
    """``run(grid, context)``: the legacy FedAvg/FedProx strategies with SecAgg+, as ``plan`` says."""
    fed, initial, names, rounds, offset = plan.fed, plan.initial, plan.names, plan.rounds, plan.offset
    evaluate, on_replies, max_weight, labels = plan.evaluate, plan.on_replies, plan.max_weight, plan.labels
    from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.strategy import FedAvg, FedProx
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

    sa = fed.secure_aggregation

    def evaluate_fn(server_round: int, arrays: list, config: dict):
        if server_round == 0 and offset > 0:
            return None  # the resumed run's start was evaluated when its round finished
        weights = {n: np.asarray(a, dtype=np.float32) for n, a in zip(names, arrays)}
        scalars = evaluate(offset + server_round, weights)
        return float(scalars.get("loss", 0.0)), scalars

    def fit_metrics(results: list) -> dict:
        on_replies([dict(m, **{WEIGHT_KEY: n}) for n, m in results])
        return {}

    kwargs = dict(
        fraction_fit=fed.sampled / fed.clients,
        fraction_evaluate=0.0,  # the server evaluates the global model on its dev set instead
        min_fit_clients=fed.sampled,
        min_evaluate_clients=0,
        min_available_clients=fed.clients,
        evaluate_fn=evaluate_fn,
        # legacy configs hold scalars only: the label names travel as one newline-separated string
        on_fit_config_fn=lambda r: {
            "round-offset": offset,
            "server-round": r,
            "labels": "\n".join(labels or []),
            "names": "\n".join(names),
            "max-weight": float(max_weight),
        },
        initial_parameters=ndarrays_to_parameters([initial[n] for n in names]),
        fit_metrics_aggregation_fn=fit_metrics,
    )
    base = FedProx if fed.strategy == "fedprox" else FedAvg

    class Float32(base):
        """SecAgg+ dequantises the sum in float64; the global tensors go back to the clients as float32 (the
        model's dtype, and half the bytes down)."""

        def aggregate_fit(self, server_round, results, failures):
            params, metrics = super().aggregate_fit(server_round, results, failures)
            if params is not None:
                params = ndarrays_to_parameters([a.astype(np.float32) for a in parameters_to_ndarrays(params)])
            return params, metrics

    strategy = Float32(proximal_mu=fed.mu, **kwargs) if fed.strategy == "fedprox" else Float32(**kwargs)
    workflow = DefaultWorkflow(
        fit_workflow=SecAggPlusWorkflow(
            num_shares=sa.num_shares,
            reconstruction_threshold=sa.reconstruction_threshold,
            max_weight=max_weight,
            clipping_range=sa.clipping_range,
            quantization_range=sa.quantization_range,
        )
    )

    def run(grid: Grid, context: Context) -> None:
        workflow(grid, LegacyContext(context=context, config=ServerConfig(num_rounds=rounds), strategy=strategy))

    return run
