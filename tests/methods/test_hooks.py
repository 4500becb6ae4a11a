"""Method-specific behaviour behind the generic hooks: AdaLoRA's rank pruning, LoRA+ groups, adapter/prompt errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import write_sentiment
from tunelab import config
from tunelab.errors import ConfigError
from tunelab.methods import adalora, adapter, loraplus, prompt_tuning
from tunelab.models import load as model_load
from tunelab.recipes import finetune


def run_cfg(tmp_path: Path, model_dir: Path, *extra: str):
    data = write_sentiment(tmp_path / "train.tsv", n=96)
    return config.load(
        None,
        [
            f"model.name={model_dir}",
            f"data.train={data}",
            "data.text_column=sentence",
            f"output_dir={tmp_path / 'run'}",
            "train.batch_size=8",
            "train.lr=1e-2",
            "train.log_every=1",
            "train.precision=fp32",
            *extra,
        ],
    )


def bert(tiny_bert_dir):
    return model_load.load_model(
        model_load.resolve(str(tiny_bert_dir)), "AutoModelForSequenceClassification", num_labels=2
    )


class RankLog:
    """Records AdaLoRA's live ranks at every step."""

    def __init__(self):
        self.ranks: list[int] = []

    def on_step_begin(self, model, state, total):
        self.ranks.append(sum(adalora.ranks(model).values()))

    def on_evaluate(self, model, state, metrics):
        self.ranks.append(sum(adalora.ranks(model).values()))


def test_adalora_prunes_ranks_during_training(tmp_path, tiny_bert_dir):
    cfg = run_cfg(
        tmp_path,
        tiny_bert_dir,
        "method=adalora",
        "method.init_r=4",
        "method.target_r=1",
        "method.target_modules=[query,value]",
        "train.max_steps=20",
    )
    log = RankLog()
    finetune.run(cfg, quiet=True, log=lambda m: None, callbacks=(log,))
    layers = 2 * 2  # 2 transformer layers x (query, value)
    assert log.ranks[0] == 4 * layers  # full rank while warming up
    assert log.ranks[-1] <= 1 * layers  # pruned to the target budget by the end
    assert log.ranks[-1] > 0
    steps_pruned = [i for i in range(1, len(log.ranks)) if log.ranks[i] < log.ranks[i - 1]]
    assert len(steps_pruned) >= 2, f"ranks should shrink gradually, got {log.ranks}"
    saved = (tmp_path / "run" / "model" / "adapter_config.json").read_text()
    assert '"total_step": 20' in saved  # the real schedule, not the placeholder


def test_adalora_target_above_init_is_an_error(tiny_bert_dir):
    model, head = bert(tiny_bert_dir)
    with pytest.raises(ConfigError, match="method.target_r: 8 must not exceed method.init_r"):
        adalora.apply(model, adalora.Config(init_r=4, target_r=8), head)


def test_loraplus_puts_b_matrices_at_ratio_times_lr(tiny_bert_dir):
    model, head = bert(tiny_bert_dir)
    cfg = loraplus.Config(lr_ratio=16)
    model = loraplus.apply(model, cfg, head)
    groups = loraplus.param_groups(model, 1e-3, 0.01, cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    by_lr = {g["lr"]: [names[id(p)] for p in g["params"]] for g in groups}
    assert all(".lora_B." in n for n in by_lr[1.6e-2])
    assert not any(".lora_B." in n for lr, ns in by_lr.items() if lr != 1.6e-2 for n in ns)
    assert sum(len(g["params"]) for g in groups) == sum(p.requires_grad for p in model.parameters())


def test_adapter_unknown_architecture_names_the_layouts(tiny_bert_dir):
    model, head = bert(tiny_bert_dir)
    for layer in model.bert.encoder.layer:  # hide the attention output so no known layout matches
        layer.attention.output = torch.nn.Identity()
    with pytest.raises(
        ConfigError, match="adapter does not know where attention and feed-forward outputs are.*known layouts"
    ):
        adapter.apply(model, adapter.Config(), head)


def test_adapter_variants_place_adapters(tiny_bert_dir):
    for variant, per_layer in (("houlsby", 2), ("pfeiffer", 1)):
        model, head = bert(tiny_bert_dir)
        model = adapter.apply(model, adapter.Config(variant=variant, reduction_factor=4), head)
        wrapped = [n for n, m in model.named_modules() if isinstance(m, adapter.AdaptedLayer)]
        assert len(wrapped) == 2 * per_layer, wrapped
        assert model.bert.encoder.layer[0].output.dense.adapter.down.out_features == 32 // 4


def test_prompt_tuning_text_init_uses_the_words(tiny_bert_dir):
    model, head = bert(tiny_bert_dir)
    words = model.bert.embeddings.word_embeddings.weight.detach().clone()
    wrapped = prompt_tuning.apply(model, prompt_tuning.Config(num_virtual_tokens=4, init_text="good movie"), head)
    prompt = wrapped.prompt_encoder["default"].embedding.weight.detach()
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(str(tiny_bert_dir))("good movie")["input_ids"]  # peft keeps [CLS] ... [SEP]
    assert len(ids) == 4
    assert torch.equal(prompt, words[ids])


def test_prompt_tuning_empty_text_is_an_error(tiny_bert_dir):
    model, head = bert(tiny_bert_dir)
    with pytest.raises(ConfigError, match="method.init_text: empty text"):
        prompt_tuning.apply(model, prompt_tuning.Config(init_text="  "), head)
