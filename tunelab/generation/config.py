"""The ``generation:`` config section (defined in tunelab/generation_config.py so config loading needs no torch)."""

from tunelab.generation_config import GenerationConfig

__all__ = ["GenerationConfig", "decoding_update", "unused_sampling_keys"]


def decoding_update(given: dict) -> dict:
    """Apply the one sampling rule that `generate`, `chat` (/set) and `serve` share to user-given keys.

    ``temperature`` is the switch, as in OpenAI's API: 0 means greedy (``do_sample`` false; the configured
    temperature is kept for later), a value above 0 means sampling at that temperature unless ``do_sample`` is
    given too. Without ``temperature``, ``do_sample`` (or the run's ``generation:`` section) decides.
    Returns the keys to apply; a contradiction (temperature 0 with do_sample true) is a ValueError.
    """
    out = {k: v for k, v in given.items() if v is not None}
    temperature = out.get("temperature")
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        if temperature == 0:
            if out.get("do_sample") is True:
                raise ValueError("temperature 0 means greedy decoding; drop do_sample or give a temperature above 0")
            del out["temperature"]
            out["do_sample"] = False
        elif temperature > 0:
            out.setdefault("do_sample", True)
    return out


def unused_sampling_keys(cfg: GenerationConfig, given: dict) -> list[str]:
    """Sampling knobs the user gave that do nothing because the result decodes greedily (for a warning)."""
    if cfg.do_sample:
        return []
    return [k for k in ("top_k", "top_p") if given.get(k) is not None]
