"""Strict config: every documented error is raised with a message naming the key path."""

from __future__ import annotations

import pytest
import yaml

from tunelab import config, docs
from tunelab.errors import ConfigError


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.lrr=1e-4"], "unknown key 'train.lrr' (did you mean 'train.lr'?)"),
        (["modle.name=x"], "unknown key 'modle' (did you mean 'model'?)"),
        (["method=lora", "method.rank=4"], "unknown key 'method.rank'"),
        (["method=lora", "method.rr=4"], "(did you mean 'method.r'?)"),
        (["method.name=lorra"], "method.name: unknown method 'lorra' (did you mean 'lora'?)"),
        (["train.lr=-1"], "train.lr: Input should be greater than 0 (got -1)"),
        (["train.lr=fast"], "train.lr: Input should be a valid number"),
        (["train.precision=fp16"], "train.precision: Input should be 'auto', 'fp32' or 'bf16' (got 'fp16')"),
        (
            ["train.batch_size=30", "train.grad_accum=4"],
            "train.batch_size (30) must be a multiple of train.grad_accum (4)",
        ),
        (["data.dev_fraction=0.95"], "data.dev_fraction: Input should be less than 0.9"),
        (["method=freeze", "method.layers=-1"], "method.layers: Input should be greater than or equal to 0"),
        (["train"], "override 'train': expected key.path=value"),
    ],
)
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError) as err:
        config.load(None, overrides)
    assert message in str(err.value)


def test_yaml_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: 1e-4\n  epochs: [1,\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: not valid YAML"):
        config.load(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        config.load(tmp_path / "missing.yaml")
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping of sections"):
        config.load(listy)
    typo = tmp_path / "typo.yaml"
    typo.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match=r"typo.yaml: unknown key 'train.epoch' \(did you mean 'train.epochs'\?\)"):
        config.load(typo)


def test_overrides_win_and_parse_types(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("method:\n  name: lora\n  r: 4\ntrain:\n  lr: 1.0e-3\n")
    cfg = config.load(
        f, ["train.lr=3e-5", "method.r=16", "method.target_modules=[query,value]", "train.max_grad_norm=null"]
    )
    assert cfg.train.lr == 3e-5 and cfg.method.r == 16 and cfg.method.target_modules == ["query", "value"]
    assert cfg.train.max_grad_norm is None
    assert config.load(None, ["method=lora"]).method.name == "lora"  # short form


def test_dump_roundtrips_and_describe_covers_every_key(tmp_path):
    cfg = config.load(None, ["method=lora", "train.lr=2e-4"])
    saved = tmp_path / "config.yaml"
    saved.write_text(config.dump(cfg))
    assert config.load(saved) == cfg
    keys = {k.split()[0] for k, _, _ in docs.describe()}
    for section in ("model", "data", "train"):
        for name in type(getattr(cfg, section)).model_fields:
            assert f"{section}.{name}" in keys
    assert all(desc for _, _, desc in docs.describe())


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["task=token_classification", "data.stride=4"], "'data.stride' moved to 'task.stride'"),
        (["data.token_prefix=x"], "task: {name: token_classification, token_prefix: ...}"),
        (["task=causal_lm", "lm.packing=true"], "'lm.packing' moved to 'task.packing'"),
        (["task=causal_lm", "task.packin=true"], "unknown key 'task.packin' (did you mean 'task.packing'?)"),
        (["task=ner"], "task.name: unknown task 'ner'"),
        (
            ["task=causal_lm", "train.metric=accuracy"],
            "train.metric: 'accuracy' is not a metric of task causal_lm; choose one of: loss, perplexity",
        ),
        (["task=causal_lm", "train.metric=rougeL", "task.eval_generations=0"], "set task.eval_generations above 0"),
    ],
)
def test_task_section_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError) as err:
        config.load(None, overrides)
    assert message in str(err.value)


def test_task_short_form_and_overrides():
    cfg = config.load(None, ["task=token_classification", "task.stride=8"])
    assert cfg.task.name == "token_classification" and cfg.task.stride == 8
    assert config.load(None, []).task.name == "classification"
    keys = {k for k, _, _ in docs.describe()}
    assert {
        "task.name",
        "task.stride  [token_classification]",
        "task.packing  [causal_lm]",
        "train.keep_checkpoints",
    } <= keys


def test_run_folders_of_earlier_versions_are_upgraded_on_read(tmp_path):
    """config.yaml written before task sections existed: every default spelled out, lm: and NER keys in data:."""
    from tunelab import runs

    old = yaml.safe_load(config.dump(config.load(None, [])))
    old["task"] = "token_classification"
    old["data"].update(
        tag_column=-1, token_prefix="en:", tag_scheme="iob2", repair_tags=True, label_all_subwords=False, stride=16
    )
    old["lm"] = {
        "chat_template": "chatml",
        "train_on": "assistant",
        "overlong": "truncate",
        "packing": False,
        "eval_generations": 20,
        "eval_max_new_tokens": 128,
        "report_samples": 3,
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    cfg = runs.read_config(tmp_path)
    assert (cfg.task.name, cfg.task.token_prefix, cfg.task.repair_tags, cfg.task.stride) == (
        "token_classification",
        "en:",
        True,
        16,
    )
    with pytest.raises(ConfigError, match=r"moved to 'task\.label_all_subwords'.*also moved: .*data.tag_column"):
        config.load(tmp_path / "config.yaml")  # a user's config is not silently rewritten


@pytest.mark.parametrize(
    "item, expected",
    [
        ("task.token_prefix=en:", "en:"),  # YAML would read a mapping {"en": None}
        ("data.delimiter=|", "|"),  # YAML would read an empty block scalar
        ("data.delimiter=@", "@"),
        ("data.delimiter=tab", "\t"),
        ("task.token_prefix=''", ""),
    ],
)
def test_override_values_that_yaml_misreads_stay_strings(item, expected):
    section, key = item.split("=")[0].split(".")
    cfg = config.load(None, ["task=token_classification", item])
    assert getattr(getattr(cfg, section), key) == expected


def test_a_mapping_for_a_string_key_says_to_quote_it():
    with pytest.raises(
        ConfigError,
        match=r"task.token_prefix: Input should be a valid string \(got the mapping \{'en': 1\}: "
        r"quote the value",
    ):
        config.load(None, ["task=token_classification", "task.token_prefix={en: 1}"])


def test_encoding_and_delimiter_are_checked():
    with pytest.raises(ConfigError, match="data.encoding: unknown text encoding"):
        config.load(None, ["data.encoding=latin-9000"])
    with pytest.raises(ConfigError, match="data.delimiter: expected one character"):
        config.load(None, ["data.delimiter=;;"])
