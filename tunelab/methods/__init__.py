"""Fine-tuning methods, one file each.

Each module has ``Config`` (typed options, ``name`` literal), ``apply(model, cfg, head)``
which returns the model with only the intended parameters trainable (``head`` names the
task-head submodules that always train), ``save(model, dir)`` / ``load(model, cfg, head, dir)``
for the run folder, ``MERGEABLE`` (with ``merge(model)`` where true) and ``IDENTITY_AT_INIT``
(the untrained method leaves the model's outputs unchanged).
Optional hooks the training loop uses when present:
``param_groups(model, lr, weight_decay, cfg)`` -> optimizer groups (LoRA+), and
``callbacks(model, cfg)`` -> loop Callbacks (AdaLoRA's rank schedule).
Adding a method = one file + one line here.
"""

from tunelab.methods import (
    adalora,
    adapter,
    bitfit,
    dora,
    freeze,
    full,
    ia3,
    lora,
    loraplus,
    p_tuning,
    prefix,
    prompt_tuning,
    qlora,
    rslora,
)

METHODS = {
    "full": full,
    "freeze": freeze,
    "bitfit": bitfit,
    "lora": lora,
    "qlora": qlora,
    "rslora": rslora,
    "dora": dora,
    "loraplus": loraplus,
    "adalora": adalora,
    "ia3": ia3,
    "adapter": adapter,
    "prefix": prefix,
    "p-tuning": p_tuning,
    "prompt-tuning": prompt_tuning,
}
