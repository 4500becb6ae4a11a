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

from pydantic import Field, ValidationError, field_validator, model_validator

from tunelab import config as config_mod
from tunelab.errors import ConfigError
from tunelab.schema import Strict

SAVED_CONFIG = "federated.yaml"


MODULUS = 2**32  # SecAgg+'s mask modulus (Flower's default and maximum)


class SecureAggregation(Strict):
    """The ``federated.secure_aggregation:`` section (Flower's SecAgg+)."""

    num_shares: int | float = Field(
        1.0,
        description="SecAgg+: shares each client's secrets are split into, one per neighbour (itself included): an "
        "integer >= 3 and <= clients per round, or a fraction in (0, 1] of the clients per round (1.0 = all).",
    )
    reconstruction_threshold: int | float = Field(
        0.67,
        description="SecAgg+: shares needed to rebuild a secret (tolerated dropouts vs colluding clients): an integer "
        ">= 2 and below num_shares, or a fraction in (0, 1] of num_shares (at least 2).",
    )
    clipping_range: float = Field(
        8.0,
        gt=0,
        le=1e6,
        description="SecAgg+: every value sent must lie in [-clipping_range, clipping_range] (a client whose tensors "
        "leave it stops with an error); the quantisation step is 2*clipping_range/quantization_range.",
    )
    quantization_range: int = Field(
        2**22,
        ge=2**8,
        lt=MODULUS,
        description="SecAgg+: integer levels each value is quantised to; clients per round x quantization_range must "
        "stay within 2**32 (the mask modulus).",
    )

    max_weight: float | None = Field(
        None,
        gt=0,
        description="SecAgg+: the largest client weight (training rows) its quantised weights are scaled by; null = "
        "the largest client's training rows when simulated, 1000 (Flower's default) when deployed (the server does not "
        "know the clients' rows); a client with more rows stops with an error.",
    )

    @field_validator("num_shares", "reconstruction_threshold", mode="before")
    @classmethod
    def _one_is_all(cls, value):
        return 1.0 if value == 1 and not isinstance(value, bool) else value  # Flower reads an integer 1 as 1.0

    @model_validator(mode="after")
    def _shares(self) -> "SecureAggregation":
        n, t = self.num_shares, self.reconstruction_threshold
        if isinstance(n, float) and not 0 < n <= 1:
            raise ValueError(f"num_shares {n} as a fraction must be in (0, 1]")
        if isinstance(n, int) and n < 3:
            raise ValueError(f"num_shares {n} as an integer must be at least 3 (or a fraction such as 1.0)")
        if isinstance(t, float) and not 0 < t <= 1:
            raise ValueError(f"reconstruction_threshold {t} as a fraction must be in (0, 1]")
        if isinstance(t, int) and t < 2:
            raise ValueError(f"reconstruction_threshold {t} as an integer must be at least 2")
        if isinstance(t, int) and isinstance(n, int) and t >= n:
            raise ValueError(f"reconstruction_threshold {t} must be below num_shares ({n})")
        return self


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
    secure_aggregation: SecureAggregation | None = Field(
        None,
        description="Secure aggregation with Flower's SecAgg+ (the server sees only the sum of the clients' masked "
        "tensors); a mapping of the keys below ({} = defaults); null = off.",
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
        if self.secure_aggregation is not None:
            self._check_secure_aggregation(self.secure_aggregation)
        return self

    def _check_secure_aggregation(self, sa: SecureAggregation) -> None:
        """Combinations SecAgg+ cannot run (the README's Secure aggregation paragraph says why)."""
        where = "secure_aggregation"
        if self.dp_noise_multiplier is not None:
            raise ValueError(
                f"{where} with dp_noise_multiplier is not supported: Flower runs SecAgg+ only with its legacy "
                "strategies, whose central-DP wrapper has no privacy accountant, and tunelab reports epsilon for every "
                "DP run; choose one of the two"
            )
        if self.sampled < 2:
            raise ValueError(
                f"{where} needs at least 2 clients per round (got {self.sampled}): a sum of one is no secret"
            )
        if isinstance(sa.num_shares, int) and sa.num_shares > self.sampled:
            raise ValueError(f"{where}.num_shares {sa.num_shares} is above the clients per round ({self.sampled})")
        if isinstance(sa.reconstruction_threshold, int) and sa.reconstruction_threshold > self.sampled:
            raise ValueError(
                f"{where}.reconstruction_threshold {sa.reconstruction_threshold} is above the clients per round "
                f"({self.sampled})"
            )
        if self.sampled * sa.quantization_range > MODULUS:
            raise ValueError(
                f"{where}.quantization_range {sa.quantization_range} x {self.sampled} clients per round exceeds SecAgg+'s "
                f"modulus 2**32 (the masked sum would overflow); lower it to {MODULUS // self.sampled} or less"
            )

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
            *parents, leaf = key[len("federated.") :].split(".")
            node = section
            for name in parents:  # federated.secure_aggregation.num_shares=3: a key of a nested section
                if not isinstance(node.get(name), dict):
                    node[name] = {}
                node = node[name]
            node[leaf] = config_mod.parse_override_value(value)
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
