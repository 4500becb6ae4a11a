"""Flower's side of `tunelab federated`: the ClientApp, the ServerApp, the strategy (FedAvg/FedProx, optionally in
Flower's central-DP wrapper with client-side fixed clipping and the RDP accountant), and an in-process Grid.

Why an in-process Grid: flwr 1.42's simulation engine has one back-end, Ray (``flwr[simulation]`` pulls ray 2.55,
a cluster runtime with its own processes), too heavy for a laptop run of a few clients. ``Grid`` is Flower's public
interface between a ServerApp and the ClientApps; ``InProcessGrid`` implements it by calling the ClientApp on each
message in this process, one client after another, so the same ServerApp, ClientApp, strategies and DP mods run
as they would on a SuperLink with SuperNodes. Everything that travels is a Flower ``ArrayRecord`` of the
trainable tensors; the bytes counted per round are those arrays' serialised payloads (``Array.data``).

Flower is imported only here, and this module only by the federated recipe (``import tunelab`` stays light).
"""

from __future__ import annotations

import copy
import uuid
from typing import Callable, Iterable

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg, FedProx
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords

from tunelab.federated.config import FederatedConfig

WEIGHT_KEY = "num-examples"  # FedAvg's weight: the client's training rows
DP_WEIGHT_KEY = "dp-weight"  # with DP: 1 per client (Flower's accountant requires equal weights)
PARTITION = "partition-id"  # node_config key naming a client's partition (Flower's convention)
RUN_ID = 1
FIRST_NODE = 1000  # client node ids FIRST_NODE + partition (the SuperLink itself is node 1)


def payload_bytes(record: ArrayRecord) -> int:
    """Serialised bytes of the tensors in ``record`` (what the wire carries, metadata aside)."""
    return sum(len(record[k].data) for k in record.keys())


def message_bytes(content: RecordDict) -> int:
    """Payload bytes of a message: its tensors plus the bytes values of its config records (SecAgg+'s public keys,
    encrypted shares and masked vectors travel as those); numbers and names aside."""
    total = sum(payload_bytes(record) for record in content.array_records.values())
    for record in content.config_records.values():
        for value in record.values():
            items = value if isinstance(value, list) else [value]
            total += sum(len(x) for x in items if isinstance(x, bytes))
    return total


def to_record(weights: dict, order: Iterable[str] | None = None) -> ArrayRecord:
    """numpy tensors (by name) as an ArrayRecord, keys in ``order`` (default: the dict's)."""
    keys = list(order) if order is not None else list(weights)
    return ArrayRecord({k: Array(np.ascontiguousarray(weights[k])) for k in keys})


def from_record(record: ArrayRecord) -> dict:
    """An ArrayRecord as numpy tensors by name."""
    return {k: record[k].numpy() for k in record.keys()}


# ---------------------------------------------------------------- strategy


def build_strategy(fed: FederatedConfig, on_train_replies: Callable[[list[RecordDict]], None]):
    """FedAvg or FedProx over the sampled clients; wrapped in Flower's central DP (client-side fixed clipping, RDP
    accounting at ``fed.dp_delta``) when ``fed.dp_noise_multiplier`` is set. ``on_train_replies`` sees every
    round's replies (per-client metrics, bytes) before Flower aggregates their metrics."""
    dp = fed.dp_noise_multiplier is not None
    key = DP_WEIGHT_KEY if dp else WEIGHT_KEY

    def train_metrics(contents: list[RecordDict], weighted_by: str) -> MetricRecord:
        on_train_replies(contents)
        return aggregate_metricrecords(contents, weighted_by)

    kwargs = dict(
        fraction_train=fed.sampled / fed.clients,
        fraction_evaluate=0.0,  # the server evaluates the global model on its dev set instead
        min_train_nodes=fed.sampled,
        min_evaluate_nodes=0,
        min_available_nodes=fed.clients,
        weighted_by_key=key,
        train_metrics_aggr_fn=train_metrics,
    )
    strategy = FedProx(proximal_mu=fed.mu, **kwargs) if fed.strategy == "fedprox" else FedAvg(**kwargs)
    if not dp:
        return strategy
    from flwr.serverapp import NeighboringRelation, PrivacyConfig, RdpAccountant, SamplingMethod

    accountant = RdpAccountant(
        PrivacyConfig(
            target_delta=fed.dp_delta,
            population_size=fed.clients,
            neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
            sampling_method=SamplingMethod.NO_AMPLIFICATION,
        )
    )
    return DifferentialPrivacyClientSideFixedClipping(
        strategy, fed.dp_noise_multiplier, fed.dp_clipping_norm, fed.sampled, accountant=accountant
    )


def privacy_spent(strategy) -> dict | None:
    """Epsilon so far at the configured delta (None without DP)."""
    if not isinstance(strategy, DifferentialPrivacyClientSideFixedClipping):
        return None
    spent = strategy.privacy_spent()
    return {
        "epsilon": spent.epsilon,
        "delta": spent.delta,
        "releases": spent.num_releases,
        "method": spent.accounting_method,
    }


# ---------------------------------------------------------------- apps


def client_app(train: Callable, dp: bool) -> ClientApp:
    """A ClientApp whose train handler calls ``train(partition, round, start_weights, mu, labels) -> LocalResult``
    (see ``train_reply``); the node's ``partition-id`` names the client. With DP, Flower's ``fixedclipping_mod``
    clips the update (trained minus received) to the norm the server sends."""
    from flwr.clientapp.mod import fixedclipping_mod

    app = ClientApp(mods=[fixedclipping_mod] if dp else [])

    @app.train()
    def _train(msg: Message, context: Context) -> Message:
        return train_reply(msg, int(context.node_config[PARTITION]), train)

    return app


def train_reply(msg: Message, partition: int, train: Callable) -> Message:
    """Client ``partition``'s reply to a train message: ``train(partition, round, start_weights, mu, labels)``
    from the tensors and config received, answered with the trained tensors (same keys and order as received) and
    the client's metrics."""
    received = msg.content["arrays"]
    config = msg.content["config"]
    round_ = int(config["round-offset"]) + int(config["server-round"])
    labels = [str(x) for x in config["labels"]] or None
    result = train(partition, round_, from_record(received), float(config.get("proximal-mu", 0.0)), labels)
    metrics = {WEIGHT_KEY: result.rows, DP_WEIGHT_KEY: 1.0, "client": partition, "round": round_, **result.metrics}
    reply = RecordDict({"arrays": to_record(result.weights, received.keys()), "metrics": MetricRecord(metrics)})
    return Message(content=reply, reply_to=msg)


def server_app(
    strategy, initial: dict, rounds: int, offset: int, evaluate: Callable[[int, dict], dict], labels: list | None
) -> ServerApp:
    """A ServerApp running ``serve_rounds`` (the same arguments) on the Grid it is given."""
    app = ServerApp()

    @app.main()
    def _main(grid: Grid, context: Context) -> None:
        serve_rounds(grid, strategy, initial, rounds, offset, evaluate, labels)

    return app


def serve_rounds(
    grid: Grid, strategy, initial: dict, rounds: int, offset: int, evaluate: Callable[[int, dict], dict], labels
) -> None:
    """Run ``strategy`` on ``grid`` for ``rounds`` rounds from the tensors ``initial``; rounds are numbered from
    ``offset + 1`` (a resumed run); ``evaluate(round, weights)`` runs after each round (and before the first); the
    clients get the federation's ``labels`` (their heads must line up whatever classes they hold)."""

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        if server_round == 0 and offset > 0:
            return MetricRecord({})  # the resumed run's start was evaluated when its round finished
        return MetricRecord(evaluate(offset + server_round, from_record(arrays)))

    strategy.start(
        grid=grid,
        initial_arrays=to_record(initial),
        num_rounds=rounds,
        train_config=ConfigRecord({"round-offset": offset, "labels": [str(x) for x in labels or []]}),
        evaluate_fn=evaluate_fn,
    )


class CountingGrid(Grid):
    """A deployed run's Grid (Flower's, to the SuperNodes) that counts the payload bytes of every message both
    ways per client (``message_bytes``), as the in-process grid does: bytes per round are measured, whatever
    workflow (FedAvg, SecAgg+'s four exchanges) sends them, keyed by the clients' ``partition-id`` (learnt from
    their training replies)."""

    def __init__(self, grid: Grid):
        self.grid = grid
        self.down: dict[int, int] = {}  # node id -> bytes sent to it since take_traffic()
        self.up: dict[int, int] = {}
        self.partition: dict[int, int] = {}  # node id -> partition-id

    def set_run(self, run) -> None:
        self.grid.set_run(run)

    @property
    def run(self):
        return self.grid.run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None) -> Message:
        return self.grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self):
        return self.grid.get_node_ids()

    def get_nodes(self):
        return self.grid.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        messages = list(messages)
        for msg in messages:
            self._count(self.down, msg.metadata.dst_node_id, msg)
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        replies = list(self.grid.pull_messages(message_ids))
        for reply in replies:
            self._count(self.up, reply.metadata.src_node_id, reply)
        return replies

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        for msg in messages:
            self._count(self.down, msg.metadata.dst_node_id, msg)
        replies = list(self.grid.send_and_receive(messages, timeout=timeout))
        for reply in replies:
            self._count(self.up, reply.metadata.src_node_id, reply)
        return replies

    def _count(self, table: dict, node: int, msg: Message) -> None:
        if not msg.has_content():
            return
        table[node] = table.get(node, 0) + message_bytes(msg.content)
        # a training reply names its client: train_reply's "metrics", or (SecAgg+) the legacy fit reply's metrics
        for record in (msg.content.metric_records.get("metrics"), msg.content.config_records.get("fitres.metrics")):
            if record is not None and "client" in record:
                self.partition[node] = int(record["client"])

    def record_replies(self, contents: list[RecordDict]) -> None:
        """Nothing: every message is counted as it passes."""

    def take_traffic(self) -> tuple[dict[int, int], dict[int, int]]:
        """(bytes down, bytes up) per partition since the last call; the counters restart."""
        down = {self.partition.get(n, n): b for n, b in self.down.items()}
        up = {self.partition.get(n, n): b for n, b in self.up.items()}
        self.down, self.up = {}, {}
        return down, up


class InProcessGrid(Grid):
    """Flower's Grid, delivering each message to the ClientApp in this process (node ``FIRST_NODE + i`` holds
    partition ``i``). A client's exception stops the run (a simulated client failing is a bug or bad data the
    user must see, not a dropped node)."""

    def __init__(self, app: ClientApp, n: int):
        self.app = app
        self.contexts = {
            FIRST_NODE + i: Context(
                RUN_ID, FIRST_NODE + i, node_config={PARTITION: i}, state=RecordDict(), run_config={}
            )
            for i in range(n)
        }
        self._run = None
        self._replies: dict[str, Message] = {}
        self.bytes_down = {node: 0 for node in self.contexts}  # payload bytes delivered to each node
        self.bytes_up = {node: 0 for node in self.contexts}  # and received from it, since take_traffic()

    def record_replies(self, contents: list[RecordDict]) -> None:
        """Nothing: this grid counts every message as it delivers it."""

    def take_traffic(self) -> tuple[dict[int, int], dict[int, int]]:
        """(bytes down, bytes up) per partition since the last call; the counters restart."""
        down = {node - FIRST_NODE: n for node, n in self.bytes_down.items()}
        up = {node - FIRST_NODE: n for node, n in self.bytes_up.items()}
        self.bytes_down = dict.fromkeys(self.bytes_down, 0)
        self.bytes_up = dict.fromkeys(self.bytes_up, 0)
        return down, up

    def set_run(self, run) -> None:
        self._run = run

    @property
    def run(self):
        return self._run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        for msg in messages:
            key = str(uuid.uuid4())
            self._replies[key] = self._deliver(msg)
            ids.append(key)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        return [self._deliver(msg) for msg in messages]

    def _deliver(self, msg: Message) -> Message:
        node = msg.metadata.dst_node_id
        self.bytes_down[node] += message_bytes(msg.content)
        # each client gets its own copy, as over a wire: SecAgg+'s server sends one content object to every client
        # and its client mod pops keys from it
        reply = self.app(copy.deepcopy(msg), self.contexts[node])
        if reply.has_content():
            self.bytes_up[node] += message_bytes(reply.content)
        return reply


def run_in_process(app: ServerApp, grid: InProcessGrid) -> None:
    """Run ``app`` on ``grid`` in this process, set up as Flower's own runtimes do before they start a ServerApp
    (the process's task identity, which new Messages are stamped with, and the app's Context)."""
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.supercore.run import Run

    set_task_identity()
    grid.set_run(Run.create_empty(RUN_ID))  # the legacy workflow (SecAgg+) reads grid.run.run_id
    app(grid, Context(RUN_ID, SUPERLINK_NODE_ID, node_config={}, state=RecordDict(), run_config={}))


def set_task_identity() -> None:
    """Stamp this process as the in-process run's server (Flower's runtimes do it before a ServerApp starts; every
    Message created afterwards carries it)."""
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.task_id = 1
    TaskIdentity.run_id = RUN_ID
    TaskIdentity.node_id = SUPERLINK_NODE_ID
