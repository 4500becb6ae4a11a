"""Prompt-based learning: templates and verbalizers (``prompt:``), label-word scoring with causal and masked LMs,
demonstration selection and contextual calibration for in-context learning (``icl:``, ``tunelab icl``).
Importing this package (and its config module) does not import torch."""
