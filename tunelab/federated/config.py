"""The ``federated:`` section of a `tunelab federated` config and how a config file with it is read.

The rest of the file is an ordinary training config: ``model``, ``method`` (LoRA by default, as everywhere),
``task``, ``data`` (``data.train`` is the file partitioned over clients unless ``federated.partition: files``;
``data.dev`` is the server's dev set) and ``train`` (each client's local optimiser: lr, batch size, ...;
``federated.local_steps`` sets its steps per round).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator

from tunelab import config as config_mod
from tunelab.errors import ConfigError
from tunelab.schema import Strict

SAVED_CONFIG = "federated.yaml"


class FederatedConfig(Strict):
    """The ``federated:`` section."""

    rounds: int = Field(3, ge=1, le=10_000, description="Federated rounds (server aggregations).")
    clients: int = Field(
        4,
        ge=1,
        le=1000,
        description="Simulated clients (partitions of data.train); with partition: files, the number of client_files.",
    )
    clients_per_round: int | None = Field(
        None, ge=1, description="Clients sampled (seeded, by Flower) to train each round; null = all."
    )
    local_steps: int = Field(
        20,
        ge=1,
        le=1_000_000,
        description="Optimizer steps each sampled client takes per round (train.batch_size each).",
    )
    strategy: Literal["fedavg", "fedprox"] = Field(
        "fedavg",
        description="fedavg: average the clients' trainable tensors weighted by their training rows; fedprox: the "
        "same average, clients add (mu/2)*||w - w_global||^2 to their loss.",
    )
    mu: float = Field(0.01, ge=0, le=100, description="fedprox only: weight of the proximal term.")
    partition: Literal["iid", "dirichlet", "files"] = Field(
        "iid",
        description="iid: data.train shuffled and dealt into equal parts; dirichlet: label shares per client drawn "
        "from Dirichlet(alpha) (non-IID); files: one training file per client (client_files).",
    )
    alpha: float = Field(0.5, gt=0, le=1e6, description="dirichlet only: concentration; small = few labels per client.")
    client_files: list[str] | None = Field(
        None, description="partition: files only: one training file per client, in data.train's format."
    )
    client_dev_fraction: float = Field(
        0.1, gt=0, lt=0.9, description="Share of each client's rows held out for its local metrics (never sent)."
    )
    dp_noise_multiplier: float | None = Field(
        None,
        gt=0,
        le=1000,
        description="Differential privacy (Flower's central DP with client-side fixed clipping): Gaussian noise of "
        "std noise_multiplier * dp_clipping_norm / sampled clients on the averaged update; null = off.",
    )
    dp_clipping_norm: float = Field(
        1.0,
        gt=0,
        description="DP: each client's update (trainable tensors minus the global ones) is clipped to this L2 norm.",
    )
    dp_delta: float = Field(
        1e-5, gt=0, lt=1, description="DP: the delta at which epsilon is reported (RDP accountant)."
    )
    seed: int | None = Field(None, description="Seed of the partition and client sampling; null = train.seed.")

    @model_validator(mode="after")
    def _consistent(self) -> "FederatedConfig":
        if self.partition == "files" and not self.client_files:
            raise ValueError("partition: files needs client_files (one training file per client)")
        if self.partition != "files" and self.client_files:
            raise ValueError(f"client_files is given but partition is {self.partition!r}; set partition: files")
        if self.client_files and len(self.client_files) != self.clients:
            raise ValueError(f"clients is {self.clients} but client_files lists {len(self.client_files)} files")
        if self.clients_per_round is not None and self.clients_per_round > self.clients:
            raise ValueError(f"clients_per_round {self.clients_per_round} is above clients ({self.clients})")
        return self

    @property
    def sampled(self) -> int:
        """Clients that train each round."""
        return self.clients_per_round or self.clients


def load(path: str | None, overrides: list[str]) -> tuple[config_mod.RunConfig, FederatedConfig]:
    """The run config and the federated section from CONFIG and ``key=value`` overrides (``federated.*`` ones go to
    the federated section; ``federated.clients=8`` also sets the client count of files partitions)."""
    raw = config_mod._read_yaml(Path(path)) if path else {}
    section = raw.pop("federated", None) or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{path or 'config'}: federated: must be a mapping of keys (rounds, clients, ...)")
    run_overrides = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if key.startswith("federated.") and sep:
            section[key[len("federated.") :]] = config_mod.parse_override_value(value)
        else:
            run_overrides.append(item)
    if (
        section.get("partition") == "files"
        and "clients" not in section
        and isinstance(section.get("client_files"), list)
    ):
        section["clients"] = len(section["client_files"])
    for item in run_overrides:
        config_mod._apply_override(raw, item)
    cfg = config_mod.validate(raw, source=str(path) if path else "overrides")
    return cfg, validate(section, str(path or "config"))


def validate(section: dict, source: str) -> FederatedConfig:
    """A FederatedConfig, or one ConfigError naming each bad ``federated.`` key (the closest valid key for a typo)."""
    try:
        return FederatedConfig.model_validate(section)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                close = difflib.get_close_matches(key, list(FederatedConfig.model_fields), n=1)
                hint = f"; did you mean federated.{close[0]}?" if close else ""
                problems.append(f"federated.{key}: unknown key{hint}")
            elif not key:  # a check across keys
                problems.append(f"federated: {err['msg'].removeprefix('Value error, ')}")
            else:
                problems.append(f"federated.{key}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError(f"{source}: " + "; ".join(problems)) from None
