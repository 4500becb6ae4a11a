"""Layer-wise lr decay and gradual unfreezing, usable with any method."""

from __future__ import annotations

import json

import pytest
import torch

from tests.methods.test_hooks import bert, run_cfg
from tunelab.methods import lora
from tunelab.recipes import finetune
from tunelab.training import optim
from tunelab.training.callbacks import Callback
from tunelab.training.unfreeze import unfrozen_groups


def test_layer_depths_order_embeddings_layers_head(tiny_bert_dir):
    model, _ = bert(tiny_bert_dir)
    depths, n = optim.layer_depths(model)
    assert n == 2
    assert depths["bert.embeddings.word_embeddings.weight"] == 0
    assert depths["bert.encoder.layer.0.attention.self.query.weight"] == 1
    assert depths["bert.encoder.layer.1.output.dense.weight"] == 2
    assert depths["classifier.weight"] == 3


def test_llrd_scales_lr_by_depth_also_under_peft(tiny_bert_dir):
    model, head = bert(tiny_bert_dir)
    model = lora.apply(model, lora.Config(), head)
    groups = optim.groups_builder(llrd=0.5)(model, 1e-3, 0.0)
    names = {id(p): n for n, p in model.named_parameters()}
    lr_of = {names[id(p)]: g["lr"] for g in groups for p in g["params"]}
    assert lr_of["base_model.model.classifier.modules_to_save.default.weight"] == pytest.approx(1e-3)
    assert lr_of["base_model.model.bert.encoder.layer.1.attention.self.query.lora_A.default.weight"] == pytest.approx(
        5e-4
    )
    assert lr_of["base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.default.weight"] == pytest.approx(
        2.5e-4
    )
    assert len(lr_of) == sum(p.requires_grad for p in model.parameters())


def test_unfrozen_groups_schedule():
    assert [unfrozen_groups(s, 3) for s in range(7)] == [1, 1, 1, 2, 2, 2, 3]


def test_gradual_unfreeze_keeps_lower_layers_fixed_until_their_turn(tmp_path, tiny_bert_dir):
    cfg = run_cfg(
        tmp_path,
        tiny_bert_dir,
        "method=full",
        "train.max_steps=4",
        "train.gradual_unfreeze_every=2",
        "train.eval_every=2",
        "train.save_every=2",
    )
    seen = []

    class Watch(Callback):
        def on_step_begin(self, ctx):
            model = ctx.model
            seen.append(
                (
                    ctx.state.step,
                    model.bert.encoder.layer[1].output.dense.weight.detach().clone(),
                    model.bert.encoder.layer[0].output.dense.weight.detach().clone(),
                )
            )

    messages = []
    finetune.run(cfg, quiet=True, log=messages.append, callbacks=(Watch(),))
    (_, top0, low0), (_, top2, low2), (_, top3, low3) = seen[0], seen[2], seen[3]
    assert torch.equal(top0, top2) and torch.equal(low0, low2)  # steps 0-1: head only
    assert not torch.equal(top2, top3) and torch.equal(low2, low3)  # step 2: top layer joins, layer 0 still fixed
    assert any("gradual unfreeze: step 3: training the top 2 layer groups" in m for m in messages)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["steps"] == 4
