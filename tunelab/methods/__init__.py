"""Fine-tuning methods, one file each.

Each module has ``Config`` (typed options, ``name`` literal), ``apply(model, cfg, head)``
which returns the model with only the intended parameters trainable (``head`` names the
task-head submodules that always train), ``save(model, dir)`` / ``load(model, cfg, head, dir)``
for the run folder, ``MERGEABLE`` and, where it applies, ``merge(model)``.
Adding a method = one file + one line here.
"""

from tunelab.methods import freeze, full, lora

METHODS = {
    "full": full,
    "freeze": freeze,
    "lora": lora,
}
