"""Fine-tuning methods, one file each, each implementing the declared ``protocol.Method`` in full:
``Config`` (typed options, ``name`` literal), ``apply(model, cfg, head)``, ``save``/``load`` for the run
folder, ``merge`` with ``MERGEABLE``, ``IDENTITY_AT_INIT``, ``param_groups`` (LoRA+) and ``callbacks``
(AdaLoRA's rank schedule). ``METHODS`` is checked against the protocol when it is built.
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
    protocol,
    qlora,
    rslora,
)

METHODS = protocol.check(
    {
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
)
