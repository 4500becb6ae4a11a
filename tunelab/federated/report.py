"""The federated run's report.md: setup, final metrics, per-round table (server dev metric, each client's local
metrics, bytes up and down, epsilon) and the per-round curves (rounds.png)."""

from __future__ import annotations

from pathlib import Path

from tunelab.evaluation.report import markdown_table

PLOT = "rounds.png"


def write(run_dir: Path, cfg, final: dict, rounds: list[dict]) -> Path:
    """Write report.md and rounds.png into ``run_dir``."""
    run_dir = Path(run_dir)
    fed = final["federated"]
    metric = cfg.train.metric
    plot(rounds, metric, run_dir / PLOT)
    parts = [
        f"# tunelab federated run: {run_dir.name}",
        "",
        f"model `{cfg.model.name}`, task `{cfg.task.name}`, method `{cfg.method.name}` "
        f"({final['trainable_parameters']:,} of {final['total_parameters']:,} parameters train and travel); "
        f"{fed['strategy']}, {fed['clients']} clients ({fed['clients_per_round']} per round, partition "
        f"{fed['partition']}), {fed['rounds']} rounds x {fed['local_steps']} local steps of "
        f"{cfg.train.batch_size} examples ({fed['examples_seen']:,} examples seen), {final['train_seconds']} s.",
        "",
        f"Adapter: {fed['adapter_bytes']:,} bytes of tensors ({fed['adapter_payload_bytes']:,} as Flower serialises "
        f"them); per round {fed['bytes_per_round']['up']:,} bytes up and "
        f"{fed['bytes_per_round']['down']:,} bytes down (adapter x clients).",
        "",
    ]
    if "privacy" in fed:
        p = fed["privacy"]
        parts += [
            f"Differential privacy (Flower central DP, client-side fixed clipping): noise multiplier "
            f"{p['noise_multiplier']}, clipping norm {p['clipping_norm']}; epsilon {p['epsilon']:.3f} at delta "
            f"{p['delta']:g} after {p['releases']} releases ({p['method']}).",
            "",
        ]
    scalar = [k for k, v in final["dev"].items() if isinstance(v, float)]
    parts += [
        "## Global model on the server's dev set",
        "",
        markdown_table(scalar, [[final["dev"][k] for k in scalar]]),
    ]
    parts += ["", "## Rounds", "", f"![per-round curves]({PLOT})", ""]
    head = ["round", f"dev {metric}", "bytes up", "bytes down", "clients: local dev " + metric + " (train loss)"]
    rows = []
    for r in rounds:
        local = "; ".join(
            f"{c['client']}: {c.get('local_dev_' + metric, float('nan')):.3f} ({c.get('local_train_loss', float('nan')):.3f})"
            for c in r["clients"]
        )
        rows.append([r["round"], r.get(f"dev/{metric}", float("nan")), r["bytes_up"], r["bytes_down"], local or "-"])
    parts += [markdown_table(head, rows), "", "## Clients", ""]
    parts += [
        markdown_table(
            ["client", "training rows", "labels"],
            [
                [k, n, ", ".join(f"{a}: {b}" for a, b in share.items())]
                for k, (n, share) in enumerate(zip(fed["client_rows"], fed["client_labels"]))
            ],
        ),
        "",
    ]
    out = run_dir / "report.md"
    out.write_text("\n".join(parts), encoding="utf-8")
    return out


def plot(rounds: list[dict], metric: str, path: Path) -> None:
    """Server dev metric and each client's local dev metric per round; bytes per round on the second panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.5))
    xs = [r["round"] for r in rounds]
    ax.plot(xs, [r.get(f"dev/{metric}") for r in rounds], marker="o", label="global (server dev)")
    clients = sorted({c["client"] for r in rounds for c in r["clients"]})
    for k in clients:
        pts = [(r["round"], c.get(f"local_dev_{metric}")) for r in rounds for c in r["clients"] if c["client"] == k]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], linestyle="--", alpha=0.6, label=f"client {k} (local dev)")
    ax.set_xlabel("round")
    ax.set_ylabel(metric)
    ax.legend(fontsize=7)
    bx.bar([x - 0.2 for x in xs], [r["bytes_up"] / 2**20 for r in rounds], width=0.4, label="up")
    bx.bar([x + 0.2 for x in xs], [r["bytes_down"] / 2**20 for r in rounds], width=0.4, label="down")
    bx.set_xlabel("round")
    bx.set_ylabel("MiB")
    bx.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
