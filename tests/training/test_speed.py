"""Speed levers: bf16 frozen weights leave the autocast forward/backward unchanged; compile and checkpointing keep the loss."""

from __future__ import annotations

import pytest
import torch

from tunelab.methods import METHODS
from tunelab.models import load as model_load
from tunelab.tasks import causal_lm
from tunelab.training import speed


def _lora_llama(folder):
    src = model_load.resolve(str(folder))
    model, head = model_load.load_model(src, causal_lm.CausalLM.auto_class)
    return METHODS["lora"].apply(model, METHODS["lora"].Config(), head), model_load.load_tokenizer(src)


def _batch(tok):
    ids = tok("the movie was good and the plot was fun", return_tensors="pt")["input_ids"]
    return {"input_ids": ids, "labels": ids.clone(), "attention_mask": torch.ones_like(ids)}


def _loss_and_grads(model, batch, precision="bf16"):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        task = causal_lm.CausalLM()
        loss, _ = task.loss(task.forward(model, batch), batch)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_bf16_frozen_weights_change_nothing_under_autocast(tiny_llama_dir):
    model, tok = _lora_llama(tiny_llama_dir)
    for n, p in model.named_parameters():  # B != 0 so the LoRA path carries gradient everywhere
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.02)
    batch = _batch(tok)
    ref_loss, ref_grads = _loss_and_grads(model, batch)
    with speed.bf16_frozen(model) as n:
        assert n > 0
        dtypes = {name: p.dtype for name, p in model.named_parameters()}
        loss, grads = _loss_and_grads(model, batch)
    assert all(dtypes[name] == torch.float32 for name in grads)  # trained weights stay fp32 (master weights)
    assert all(dtypes[name] == torch.float32 for name in dtypes if "norm" in name or "embed" in name)
    assert any(d == torch.bfloat16 for d in dtypes.values())
    assert loss == pytest.approx(ref_loss, abs=1e-6)
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=0, atol=1e-6)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # restored on exit


def test_bf16_frozen_skips_full_finetuning_and_fp32(tiny_llama_dir):
    src = model_load.resolve(str(tiny_llama_dir))
    model, _ = model_load.load_model(src, causal_lm.CausalLM.auto_class)
    assert speed.frozen_linears(model) == []  # everything trains: nothing to hold in bf16
    logs = []
    with speed.applied(model, speed.Config(), "fp32", False, logs.append):
        assert all(p.dtype == torch.float32 for p in model.parameters())
    assert logs == []


def test_gradient_checkpointing_keeps_loss_and_grads(tiny_llama_dir):
    model, tok = _lora_llama(tiny_llama_dir)
    batch = _batch(tok)
    model.train()
    ref_loss, ref_grads = _loss_and_grads(model, batch, "fp32")
    speed.enable_checkpointing(model)
    loss, grads = _loss_and_grads(model, batch, "fp32")
    assert loss == pytest.approx(ref_loss, abs=1e-6)
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-5, atol=1e-7)
