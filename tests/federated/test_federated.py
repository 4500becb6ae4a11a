"""`tunelab federated` on the tiny BERT: a 2-client, 2-round Flower simulation whose global adapter is the weighted
average of the clients' updates; FedProx; DP noise of the configured scale with epsilon reported (and continued after
a resume); SecAgg+ within its quantisation error; the same apps on a local SuperLink and two SuperNodes; resume after
an interrupt; the run folder works with predict/eval; clear errors. Skipped without Flower (make setup installs it)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip(
    "flwr",
    reason="Flower (flwr) is not installed: make setup installs it (pip install 'tunelab[test]' or 'tunelab[federated]')",
)

from safetensors.numpy import load_file  # noqa: E402

from tunelab import cli, runs  # noqa: E402
from tunelab.errors import ConfigError, TunelabError  # noqa: E402
from tunelab.federated import client as client_mod  # noqa: E402
from tunelab.federated.config import FederatedConfig  # noqa: E402
from tunelab.recipes import federated  # noqa: E402


def fed_args(tmp_path, tiny_bert_dir, *extra):
    from tests.conftest import loop_args

    return [
        *loop_args(tmp_path, tiny_bert_dir),
        "method=lora",
        "method.target_modules=[query,value]",
        "train.lr=1e-2",
        "speed.cache=false",
        "federated.clients=2",
        "federated.rounds=2",
        "federated.local_steps=3",
        *extra,
    ]


def client_update(out, k, r):
    folder = out / "clients" / f"client-{k}" / f"round-{r:03d}"
    meta = client_mod.reload(folder)
    return meta.weights, meta.rows


def test_two_clients_two_rounds_average_is_the_weighted_mean(tmp_path, tiny_bert_dir, monkeypatch):
    real, starts = client_mod.train, {}

    def spy(cfg, rows, start, mu, log):
        starts[cfg.output_dir[-len("client-0/round-001") :]] = start
        return real(cfg, rows, start, mu, log)

    monkeypatch.setattr(client_mod, "train", spy)
    out = tmp_path / "fed"
    args = fed_args(tmp_path, tiny_bert_dir, "federated.partition=dirichlet", "federated.alpha=0.5")
    assert cli.main(["federated", *args, f"output_dir={out}"]) == 0
    rounds = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    final = json.loads((out / "metrics.json").read_text())
    fed = final["federated"]
    # only the trainable tensors travel: bytes per round = adapter size x clients, both ways
    assert rounds[2]["bytes_up"] == rounds[2]["bytes_down"] == 2 * fed["adapter_payload_bytes"]
    assert fed["adapter_bytes"] == 4 * final["trainable_parameters"]  # float32 tensors
    assert (
        0
        < fed["adapter_payload_bytes"] - fed["adapter_bytes"]
        < 200 * len(load_file(str(out / "federated" / "global.safetensors")))
    )
    assert [c["client"] for c in rounds[1]["clients"]] == [0, 1]
    assert all("local_dev_accuracy" in c and "local_train_loss" in c for c in rounds[1]["clients"])
    # the global tensors after round 2 are the row-weighted mean of the clients' round-2 tensors (Flower's FedAvg)
    (w0, n0), (w1, n1) = client_update(out, 0, 2), client_update(out, 1, 2)
    assert n0 != n1 and n0 + n1 == sum(fed["client_rows"])
    glob = load_file(str(out / "federated" / "global.safetensors"))
    assert set(glob) == set(w0)
    for name in glob:
        np.testing.assert_allclose(glob[name], (n0 * w0[name] + n1 * w1[name]) / (n0 + n1), rtol=1e-5, atol=1e-7)
    # both clients started round 2 from round 1's weighted average (what the server sent back)
    (a0, _), (a1, _) = client_update(out, 0, 1), client_update(out, 1, 1)
    for k in (0, 1):
        start = starts[f"client-{k}/round-002"]
        for name in glob:
            np.testing.assert_allclose(start[name], (n0 * a0[name] + n1 * a1[name]) / (n0 + n1), rtol=1e-5, atol=1e-7)
    assert not np.allclose(starts["client-0/round-002"][name], starts["client-0/round-001"][name])
    # the run folder is like any other: predict and eval rebuild the global model from it
    run = runs.load_run(out)
    assert run.labels == ["0", "1"]
    from tunelab.training.parts import plain_name

    loaded = {plain_name(k): v.detach().numpy() for k, v in run.model.named_parameters()}
    for name, tensor in glob.items():
        np.testing.assert_allclose(loaded[name], tensor, rtol=0, atol=0)
    report = (out / "report.md").read_text()
    assert "## Rounds" in report and (out / "rounds.png").is_file()
    assert f"per round {rounds[2]['bytes_up']:,} bytes up" in report
    assert json.loads((out / "federated.json").read_text())["summary"]["partition"] == "dirichlet"


def test_fedprox_sends_mu_and_pulls_towards_the_global_model(tmp_path, tiny_bert_dir, monkeypatch):
    real = client_mod.train
    seen = []

    def spy(cfg, rows, start, mu, log):
        seen.append((start, mu))
        return real(cfg, rows, start, mu, log)

    monkeypatch.setattr(client_mod, "train", spy)
    args = fed_args(tmp_path, tiny_bert_dir, "federated.rounds=1", "federated.clients_per_round=1")
    far, near = tmp_path / "avg", tmp_path / "prox"
    assert cli.main(["federated", "--quiet", *args, f"output_dir={far}"]) == 0
    assert (
        cli.main(["federated", "--quiet", *args, "federated.strategy=fedprox", "federated.mu=50", f"output_dir={near}"])
        == 0
    )
    (start_avg, mu_avg), (start_prox, mu_prox) = seen
    assert (mu_avg, mu_prox) == (0.0, 50.0)  # Flower's FedProx sends proximal-mu to the clients
    for name in start_avg:
        np.testing.assert_array_equal(start_avg[name], start_prox[name])
    k = json.loads((near / "rounds.jsonl").read_text().splitlines()[1])["clients"][0]["client"]
    plain, _ = client_update(far, k, 1)
    prox, _ = client_update(near, k, 1)

    def dist(w):
        return sum(float(((w[n] - start_avg[n]) ** 2).sum()) for n in start_avg)

    assert 0 < dist(prox) < 0.5 * dist(plain)


def test_dp_noise_has_the_configured_scale_and_epsilon_is_reported(tmp_path, tiny_bert_dir, monkeypatch):
    from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

    from tunelab.federated import flower

    flower.set_task_identity()  # what a run does before its ServerApp starts (Messages are stamped with it)
    fed = FederatedConfig(clients=4, dp_noise_multiplier=2.0, dp_clipping_norm=0.5)
    strategy = flower.build_strategy(fed, lambda contents: None)
    zeros = ArrayRecord({"w": Array(np.zeros(200_000, dtype=np.float32))})

    class Grid4(flower.InProcessGrid):
        def __init__(self):
            self.contexts = {i: None for i in range(1, 5)}

    sent = list(strategy.configure_train(1, zeros, ConfigRecord({"round-offset": 0}), Grid4()))
    replies = [
        Message(
            RecordDict({"arrays": zeros, "metrics": MetricRecord({"num-examples": 10 + i, "dp-weight": 1.0})}),
            reply_to=m,
        )
        for i, m in enumerate(sent)
    ]
    agg, _ = strategy.aggregate_train(1, replies)
    noise = agg["w"].numpy()
    # Flower's central DP: std = noise_multiplier * clipping_norm / sampled clients
    assert noise.std() == pytest.approx(2.0 * 0.5 / 4, rel=0.02) and abs(noise.mean()) < 0.005
    spent = flower.privacy_spent(strategy)
    assert spent["releases"] == 1 and 0 < spent["epsilon"] < float("inf") and spent["delta"] == fed.dp_delta
    # end to end: clipped updates, noisy average, epsilon per round in rounds.jsonl and the summary; the run is
    # interrupted in round 2 and resumed, and the accountant continues from its saved state: round 2's epsilon is
    # that of 2 releases (an accountant fed both from scratch), not of 1 again
    out = tmp_path / "dp"
    args = fed_args(tmp_path, tiny_bert_dir, "federated.dp_noise_multiplier=1.0", "federated.dp_clipping_norm=0.1")
    real = client_mod.train

    def dies_in_round_2(cfg, rows, start, mu, log):
        if cfg.output_dir.endswith("client-1/round-002"):
            raise KeyboardInterrupt
        return real(cfg, rows, start, mu, log)

    monkeypatch.setattr(client_mod, "train", dies_in_round_2)
    assert cli.main(["federated", "--quiet", *args, f"output_dir={out}"]) == 130
    monkeypatch.setattr(client_mod, "train", real)
    assert cli.main(["federated", "--quiet", *args, f"output_dir={out}"]) == 0
    rounds = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert [r["privacy"]["releases"] for r in rounds[1:]] == [1, 2]
    eps = [r["privacy"]["epsilon"] for r in rounds[1:]]
    fresh = flower.build_strategy(FederatedConfig(clients=2, dp_noise_multiplier=1.0, dp_clipping_norm=0.1), print)
    two = Grid4()
    two.contexts = {1: None, 2: None}
    expected = []
    for r in (1, 2):
        sent = list(fresh.configure_train(r, zeros, ConfigRecord({"round-offset": 0}), two))
        fresh.aggregate_train(r, [Message(RecordDict({"arrays": zeros, "metrics": MetricRecord({"num-examples": 1, "dp-weight": 1.0})}), reply_to=m) for m in sent])  # fmt: skip
        expected.append(flower.privacy_spent(fresh)["epsilon"])
    assert eps == pytest.approx(expected, rel=1e-9) and eps[0] < eps[1]
    assert json.loads((out / "metrics.json").read_text())["federated"]["privacy"]["epsilon"] == eps[1]


def test_dp_clips_each_client_update_to_the_norm(tmp_path, tiny_bert_dir, monkeypatch):
    real, starts = client_mod.train, []

    def spy(cfg, rows, start, mu, log):
        starts.append(start)
        return real(cfg, rows, start, mu, log)

    monkeypatch.setattr(client_mod, "train", spy)
    out = tmp_path / "clip"
    clip = 0.05
    args = fed_args(tmp_path, tiny_bert_dir, "federated.rounds=1", "federated.dp_noise_multiplier=1e-9")
    assert cli.main(["federated", "--quiet", *args, f"federated.dp_clipping_norm={clip}", f"output_dir={out}"]) == 0
    start = starts[0]
    glob = load_file(str(out / "federated" / "global.safetensors"))
    raw = [client_update(out, k, 1)[0] for k in (0, 1)]

    def norm(w):
        return float(np.sqrt(sum(((w[n] - start[n]) ** 2).sum() for n in start)))

    assert all(norm(w) > 2 * clip for w in raw)  # the clients' own updates were larger than the norm
    # the server's average of the clipped updates (equal weights under DP; the noise is negligible here)
    assert norm(glob) <= clip * 1.0001


def test_interrupted_run_resumes_after_the_last_round_and_matches(tmp_path, tiny_bert_dir, monkeypatch):
    args = fed_args(tmp_path, tiny_bert_dir)
    whole = tmp_path / "whole"
    assert cli.main(["federated", "--quiet", *args, f"output_dir={whole}"]) == 0
    real = client_mod.train

    def dies_in_round_2(cfg, rows, start, mu, log):
        if cfg.output_dir.endswith("client-1/round-002"):
            raise KeyboardInterrupt
        return real(cfg, rows, start, mu, log)

    cut = tmp_path / "cut"
    monkeypatch.setattr(client_mod, "train", dies_in_round_2)
    assert cli.main(["federated", "--quiet", *args, f"output_dir={cut}"]) == 130
    assert json.loads((cut / "federated" / "state.json").read_text())["round"] == 1
    assert federated.resume_hint(str(cut)).startswith("resumable after round 1")
    monkeypatch.setattr(client_mod, "train", real)
    assert cli.main(["federated", "--quiet", *args, f"output_dir={cut}"]) == 0
    a = load_file(str(whole / "federated" / "global.safetensors"))
    b = load_file(str(cut / "federated" / "global.safetensors"))
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-7)
    assert [json.loads(x)["round"] for x in (cut / "rounds.jsonl").read_text().splitlines()] == [0, 1, 2]
    # a finished run is never overwritten; a changed federated section is refused
    with pytest.raises(TunelabError, match="already holds a finished run"):
        federated.run(None, [*args, f"output_dir={cut}"], log=lambda m: None)


def test_one_file_per_client_needs_the_servers_dev_set(tmp_path, tiny_bert_dir):
    from tests.conftest import write_sentiment

    files = [write_sentiment(tmp_path / f"site{k}.tsv", n=24, seed=k) for k in range(2)]
    # site 0 holds one class only: its run still uses the federation's two labels (same head as the others)
    lines = files[0].read_text().splitlines()
    files[0].write_text("\n".join([lines[0]] + [x for x in lines[1:] if x.endswith("\t1")] * 2) + "\n")
    dev = write_sentiment(tmp_path / "dev.tsv", n=16, seed=9)
    args = fed_args(
        tmp_path, tiny_bert_dir, "federated.rounds=1", "federated.local_steps=2", "federated.partition=files"
    )
    args.append(f"federated.client_files=[{files[0]},{files[1]}]")
    with pytest.raises(TunelabError, match="federated.partition=files: set data.dev"):
        federated.run(None, [*args, f"output_dir={tmp_path / 'nodev'}"], log=lambda m: None)
    out = tmp_path / "sites"
    assert cli.main(["federated", "--quiet", *args, f"data.dev={dev}", f"output_dir={out}"]) == 0
    fed = json.loads((out / "metrics.json").read_text())["federated"]
    assert fed["client_rows"] == [22, 22]  # 24 rows each, round(10%) = 2 held out for the client's own metrics
    assert fed["client_labels"][0] == {"1": 22}
    assert json.loads((out / "metrics.json").read_text())["dev"]["accuracy"] >= 0


def test_bad_federated_sections_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"federated.roundz: unknown key; did you mean federated.rounds\?"):
        federated.load(None, ["federated.roundz=3"])
    with pytest.raises(ConfigError, match="partition: files needs client_files"):
        federated.load(None, ["federated.partition=files"])
    with pytest.raises(ConfigError, match="clients_per_round 5 is above clients"):
        federated.load(None, ["federated.clients_per_round=5"])
    with pytest.raises(ConfigError, match=r"federated.mu: Input should be greater than or equal to 0 \(got -1\)"):
        federated.load(None, ["federated.mu=-1"])
    cfg, fed = federated.load(None, ["federated.partition=files", "federated.client_files=[a.tsv,b.tsv,c.tsv]"])
    assert fed.clients == 3


def test_without_flower_the_error_says_how_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "flwr" else real(name, *a))
    with pytest.raises(TunelabError, match=r"needs Flower: pip install 'tunelab\[federated\]'"):
        federated.check_flower()


def test_secure_aggregation_equals_the_weighted_average_within_secaggs_quantisation(tmp_path, tiny_bert_dir):
    """Flower's SecAgg+ (3 clients, 3 shares, threshold 2): the server only sums masked integer vectors, and the
    global tensors it recovers are the row-weighted mean of the clients' tensors up to SecAgg+'s quantisation."""
    out = tmp_path / "secagg"
    args = fed_args(
        tmp_path,
        tiny_bert_dir,
        "federated.clients=3",
        "federated.rounds=1",
        "federated.local_steps=2",
        "federated.partition=dirichlet",
        "federated.alpha=1.0",
        "federated.secure_aggregation.num_shares=3",
        "federated.secure_aggregation.reconstruction_threshold=2",
    )
    assert cli.main(["federated", "--quiet", *args, f"output_dir={out}"]) == 0
    updates = [client_update(out, k, 1) for k in range(3)]
    rows = [n for _, n in updates]
    glob = load_file(str(out / "federated" / "global.safetensors"))
    # SecAgg+ weights client k by round(rows_k / max_weight * Q) / Q (max_weight = the largest client's rows) and
    # quantises each weighted value on a grid of 2*clip/Q with stochastic rounding: the recovered mean is off by less
    # than one step per client, divided by the sum of the weights
    q, clip = 2**22, 8.0
    ratios = [round(n / max(rows) * q) / q for n in rows]
    bound = len(rows) * (2 * clip / q) / sum(ratios)
    worst = 0.0
    for name in glob:
        plain = sum(n * w[name] for w, n in updates) / sum(rows)
        worst = max(worst, float(np.abs(glob[name] - plain).max()))
        np.testing.assert_allclose(glob[name], plain, rtol=0, atol=bound * 1.001 + 1e-7)
    assert 0 < worst  # it did go through SecAgg+'s integer grid (a plain float average would match exactly)
    rounds = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    fed = json.loads((out / "metrics.json").read_text())["federated"]
    # measured on every message of the 4 SecAgg+ exchanges: up, each client's masked integer vector (wider than its
    # float32 tensors) plus keys and shares; down, the global tensors plus the forwarded keys and shares
    assert all(c["bytes_sent"] > fed["adapter_bytes"] for c in rounds[1]["clients"])
    assert rounds[1]["bytes_down"] > 3 * fed["adapter_bytes"]
    assert runs.load_run(out).labels == ["0", "1"]


def test_secure_aggregation_refuses_what_secagg_cannot_run():
    base = ["federated.secure_aggregation={}"]
    with pytest.raises(ConfigError, match="secure_aggregation with dp_noise_multiplier is not supported"):
        federated.load(None, [*base, "federated.dp_noise_multiplier=1.0"])
    with pytest.raises(ConfigError, match="needs at least 2 clients per round"):
        federated.load(None, [*base, "federated.clients_per_round=1"])
    with pytest.raises(ConfigError, match=r"num_shares 5 is above the clients per round \(4\)"):
        federated.load(None, ["federated.secure_aggregation.num_shares=5"])
    with pytest.raises(ConfigError, match="reconstruction_threshold 3 must be below num_shares"):
        federated.load(
            None,
            ["federated.secure_aggregation.num_shares=3", "federated.secure_aggregation.reconstruction_threshold=3"],
        )
    with pytest.raises(ConfigError, match=r"exceeds SecAgg\+'s modulus 2\*\*32"):
        federated.load(None, ["federated.clients=1000", "federated.secure_aggregation.quantization_range=8388608"])
    with pytest.raises(ConfigError, match=r"federated.secure_aggregation.num_sharez: unknown key"):
        federated.load(None, ["federated.secure_aggregation.num_sharez=3"])
    _, fed = federated.load(None, [*base])
    assert fed.secure_aggregation.num_shares == 1.0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc, seconds: float) -> None:
    import socket
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert proc.poll() is None, f"{proc.args[0]} exited with {proc.returncode}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on port {port} after {seconds} s")


def test_deployed_on_a_local_superlink_and_two_supernodes(tmp_path, tiny_bert_dir):
    """The same federation through Flower's deployment runtime: `flower-superlink --insecure`, two
    `flower-supernode --insecure` processes (one takes its partition of data.train, one reads its own data-file),
    `flwr run` of examples/federated/flower-app;
    one round on the tiny model, and the run folder is the simulated run's."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.conftest import write_sentiment

    bin_dir = Path(sys.executable).parent
    if not all((bin_dir / name).is_file() for name in ("flower-superlink", "flower-supernode", "flwr")):
        pytest.skip(f"Flower's command-line tools are not in {bin_dir} (pip install 'tunelab[federated]')")
    app = Path(__file__).resolve().parents[2] / "examples" / "federated" / "flower-app"
    out, out2 = tmp_path / "deployed", tmp_path / "deployed-secagg"
    dev = write_sentiment(tmp_path / "dev.tsv", n=16, seed=9)
    config = tmp_path / "fed.yaml"
    config.write_text("task: classification\n")
    args = fed_args(tmp_path, tiny_bert_dir, "federated.rounds=1", "federated.local_steps=2", f"data.dev={dev}")
    link = _free_port()
    home = tmp_path / "flwr-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "local-test"\n\n[superlink.local-test]\naddress = "127.0.0.1:{link}"\ninsecure = true\n'
    )
    env = {**os.environ, "FLWR_HOME": str(home), "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    logs, procs = [], []

    def start(*cmd: str):
        log = open(tmp_path / f"{cmd[0]}-{len(procs)}.log", "w")
        logs.append(log)
        procs.append(subprocess.Popen([str(bin_dir / cmd[0]), *cmd[1:]], env=env, stdout=log, stderr=log))
        return procs[-1]

    try:
        superlink = start(
            "flower-superlink", "--insecure", "--port", str(link), "--disable-runtime-dependency-installation"
        )
        _wait_for_port(link, superlink, 60)
        own = write_sentiment(tmp_path / "site1.tsv", n=24, seed=1)
        # client 0 holds data.train and takes its partition 0 of 2; client 1 holds its own training file
        for node_config in ("partition-id=0 num-partitions=2", f"partition-id=1 data-file='{own}'"):
            start("flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{link}", "--port", str(_free_port()),
                  "--node-config", node_config)  # fmt: skip

        def flwr_run(overrides: str):
            run_config = f"config='{config}' overrides='{overrides}'"
            procs.append(subprocess.Popen(
                [str(bin_dir / "flwr"), "run", str(app), "local-test", "--stream", "--run-config", run_config],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            ))  # fmt: skip
            return procs[-1]

        # two runs at once on the same SuperNodes (their waits for messages overlap): FedAvg, and SecAgg+ (the
        # server sees only the masked sum)
        plain = flwr_run(" ".join([*args, f"output_dir={out}"]))
        secagg = "federated.secure_aggregation={} federated.secure_aggregation.max_weight=64"
        secure = flwr_run(" ".join([*args, f"output_dir={out2}", *secagg.split()]))
        shown, shown2 = plain.communicate(timeout=300)[0][-3000:], secure.communicate(timeout=300)[0][-3000:]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs:
            log.close()
    assert plain.returncode == 0, shown
    rounds = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rounds] == [0, 1], shown
    assert [c["client"] for c in rounds[1]["clients"]] == [0, 1]
    fed = json.loads((out / "metrics.json").read_text())["federated"]
    assert rounds[1]["bytes_up"] == rounds[1]["bytes_down"] == 2 * fed["adapter_payload_bytes"]
    (w0, n0), (w1, n1) = client_update(out, 0, 1), client_update(out, 1, 1)
    assert n1 == 22 and fed["client_rows"] == [n0, n1]  # site1.tsv's 24 rows, 2 held out for its local metrics
    glob = load_file(str(out / "federated" / "global.safetensors"))
    for name in glob:
        np.testing.assert_allclose(glob[name], (n0 * w0[name] + n1 * w1[name]) / (n0 + n1), rtol=1e-5, atol=1e-7)
    assert runs.load_run(out).labels == ["0", "1"]
    assert secure.returncode == 0, shown2
    rounds = [json.loads(line) for line in (out2 / "rounds.jsonl").read_text().splitlines()]
    assert [c["client"] for c in rounds[1]["clients"]] == [0, 1], shown2
    assert all(c["bytes_sent"] > fed["adapter_bytes"] for c in rounds[1]["clients"])  # all 4 exchanges, counted
    (w0, n0), (w1, n1) = client_update(out2, 0, 1), client_update(out2, 1, 1)
    ratios = [round(n / 64 * 2**22) / 2**22 for n in (n0, n1)]
    bound = 2 * (2 * 8.0 / 2**22) / sum(ratios)  # one quantisation step per client (see the SecAgg+ test above)
    glob = load_file(str(out2 / "federated" / "global.safetensors"))
    for name in glob:
        plain = (n0 * w0[name] + n1 * w1[name]) / (n0 + n1)
        np.testing.assert_allclose(glob[name], plain, rtol=0, atol=bound * 1.001 + 1e-7)
