"""One decode step of 32 running sequences on smollm2-135m: transformers' DynamicCache (concatenates the whole cache
per layer and step; what continuous batching used before) vs the slot cache (tunelab/serve/slots.py), alternated
6 times each in one process; plus one layer's key write by advanced indexing vs ``index_copy_`` on a flat view.

    .venv/bin/python bench/serve_cache_ab.py [EXTRA]   (EXTRA: tokens appended to each prompt, default 100)
"""

import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from transformers import DynamicCache  # noqa: E402

from tunelab.generation.decode import _left_pad, encode_prompt  # noqa: E402
from tunelab.serve import registry  # noqa: E402
from tunelab.serve.slots import SlotCache  # noqa: E402


def main() -> None:
    torch.set_num_threads(2)
    served = registry.load_all(["smollm2-135m"], log=lambda m: None)["smollm2-135m"]
    m, tok = served.model, served.tokenizer
    rows = json.loads((ROOT.parent / "shared" / "data" / "alpaca" / "dev.json").read_text())[:32]
    ids = [
        encode_prompt(tok, [{"role": "user", "content": r["instruction"]}], 10**9, served.template, log=lambda m: None)[
            0
        ]
        for r in rows
    ]
    extra = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    ids = [p + [tok.eos_token_id + 5] * (extra + 3 * i) for i, p in enumerate(ids)]  # ragged lengths
    x, mask = _left_pad(ids, tok.pad_token_id, "cpu")
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    with torch.no_grad():
        cache = DynamicCache()
        m(input_ids=x, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True, logits_to_keep=1)
        layers = [(layer.keys, layer.values) for layer in cache.layers]
        slots = SlotCache(layers, rows=32, columns=mask.shape[1] + 256)
        slots.join(layers, mask)
        tokens = torch.full((32,), 100)
        T = mask.shape[1]

        def old():
            mk = torch.cat([mask, mask.new_ones(32, 1)], 1)
            out = m(
                input_ids=tokens[:, None],
                attention_mask=mk,
                position_ids=pos[:, -1:] + 1,
                cache=cache,
                use_cache=True,
                cache_position=torch.tensor([T]),
            )
            cache.crop(-1)
            return out.logits[:, -1]

        def new():
            mk = slots.step_mask()
            return m(
                input_ids=tokens[:, None],
                attention_mask=mk,
                position_ids=slots.lengths[:, None],
                cache=slots,
                use_cache=True,
            ).logits[:, -1]

        a, b = old(), new()
        print("max |old-new| logits", float((a - b).abs().max()), "T", T)
        to, tn = [], []
        for _ in range(6):
            s = time.perf_counter()
            old()
            to.append(time.perf_counter() - s)
            s = time.perf_counter()
            new()
            tn.append(time.perf_counter() - s)
        to.sort()
        tn.sort()
        print(
            f"decode step, 32 rows: DynamicCache {1000 * to[len(to) // 2]:.1f} ms (min {1000 * to[0]:.1f}), slots {1000 * tn[len(tn) // 2]:.1f} ms (min {1000 * tn[0]:.1f})"
        )
        k = slots.layers[0].keys
        src = torch.randn(32, 3, 1, 64)
        s = time.perf_counter()
        for _ in range(100):
            k[slots.index, :, slots.lengths] = src[:, :, 0]
        t1 = (time.perf_counter() - s) / 100
        rowsN, kvh, cols, hd = k.shape
        flat = ((slots.index[:, None] * kvh + torch.arange(kvh)[None]) * cols + slots.lengths[:, None]).reshape(-1)
        s = time.perf_counter()
        for _ in range(100):
            k.view(-1, hd).index_copy_(0, flat, src.reshape(-1, hd))
        t2 = (time.perf_counter() - s) / 100
        print(f"write one step's keys of one layer: index_put {1e6 * t1:.0f} us, index_copy_ flat {1e6 * t2:.0f} us")


if __name__ == "__main__":
    main()
