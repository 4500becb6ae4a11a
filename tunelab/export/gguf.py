"""GGUF export of Llama-family causal LMs for llama.cpp, written with the ``gguf`` package's writer, and GGUF runs.

What the converter does (our own code; the layout follows llama.cpp's GGUF conventions):
- hyper-parameters under ``llama.*`` (blocks, widths, heads, KV heads, RoPE base and dimensions, RMS-norm eps);
- the byte-level BPE vocabulary (tokens in id order, token types, merges), special-token ids, whether BOS/EOS
  are added, the chat template, and the pre-tokenizer name llama.cpp uses to split text before BPE;
- tensors renamed to GGUF names (``blk.N.attn_q.weight`` ...). Query and key rows are reordered inside each
  head: transformers' Llama rotates dimension i with i + d/2 (rotate-half), llama.cpp's LLAMA architecture
  rotates adjacent pairs (2i, 2i + 1), so row i goes to 2i and row i + d/2 to 2i + 1;
- matrices stored as f32, f16, q8_0, q4_0 or q4_1 (the gguf package's quantizers); 1-D tensors stay f32. A
  matrix whose rows are not a multiple of the 32-value block falls back to f16; with q4_* the token embedding
  (also the output layer when tied) is stored as q8_0, as llama.cpp's own q4 presets keep it at higher precision.

A ``gguf`` run folder holds the .gguf file plus the HF config, generation config and tokenizer. It runs with
``torch`` (transformers reads the GGUF back, dequantized: what eval and generate use by default) or ``llamacpp``
(llama-cpp-python, an optional extra: ``serve --backend llamacpp``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from tunelab.errors import TunelabError

BACKENDS = ("torch", "llamacpp")
DTYPES = ("f16", "q8_0", "q4_0", "q4_1", "f32")
ARCHS = ("llama",)
BLOCK = 32  # values per block of q8_0/q4_0/q4_1


def _qtype(dtype: str):
    import gguf

    return {
        "f32": gguf.GGMLQuantizationType.F32,
        "f16": gguf.GGMLQuantizationType.F16,
        "q8_0": gguf.GGMLQuantizationType.Q8_0,
        "q4_0": gguf.GGMLQuantizationType.Q4_0,
        "q4_1": gguf.GGMLQuantizationType.Q4_1,
    }[dtype]


def _file_type(dtype: str) -> int:
    import gguf

    t = gguf.LlamaFileType
    return {"f32": t.ALL_F32, "f16": t.MOSTLY_F16, "q8_0": t.MOSTLY_Q8_0, "q4_0": t.MOSTLY_Q4_0, "q4_1": t.MOSTLY_Q4_1}[
        dtype
    ]


# ---------------------------------------------------------------- tensors


def rope_interleave(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(heads * d, in) query/key rows from rotate-half order to adjacent-pair order, per head: i -> 2i, i + d/2 -> 2i + 1."""
    out_features, in_features = weight.shape
    d = out_features // n_heads
    return weight.reshape(n_heads, 2, d // 2, in_features).transpose(1, 2).reshape(out_features, in_features)


def rope_deinterleave(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """The inverse of ``rope_interleave`` (GGUF rows back to transformers' order)."""
    out_features, in_features = weight.shape
    d = out_features // n_heads
    return weight.reshape(n_heads, d // 2, 2, in_features).transpose(1, 2).reshape(out_features, in_features)


def check_model(model) -> None:
    """Only what the converter maps exactly: a Llama-architecture model without biases or RoPE scaling."""
    cfg = model.config
    if cfg.model_type not in ARCHS:
        raise TunelabError(f"--format gguf: converts Llama-family models ({', '.join(ARCHS)}), not '{cfg.model_type}'")
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise TunelabError(
            f"--format gguf: RoPE scaling '{rope.get('rope_type')}' is not supported by tunelab's converter"
        )
    if getattr(cfg, "attention_bias", False) or getattr(cfg, "mlp_bias", False):
        raise TunelabError("--format gguf: attention/MLP biases are not supported by tunelab's converter")
    sizes = {m.get_submodule("mlp.down_proj").in_features for m in model.model.layers}
    if sizes != {cfg.intermediate_size}:
        raise TunelabError(
            f"--format gguf: layers have different FFN widths {sorted(sizes)} (a pruned model); "
            "GGUF's llama architecture records one feed_forward_length"
        )


def tensor_plan(model) -> list[tuple[str, torch.Tensor]]:
    """(GGUF name, tensor) pairs in file order, with query/key rows reordered for llama.cpp's RoPE."""
    import gguf

    cfg = model.config
    name = lambda kind, bid=None: gguf.TENSOR_NAMES[kind].format(bid=bid) + ".weight"  # noqa: E731
    T = gguf.MODEL_TENSOR
    plan = [(name(T.TOKEN_EMBD), model.model.embed_tokens.weight)]
    kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    for i, layer in enumerate(model.model.layers):
        attn, mlp = layer.self_attn, layer.mlp
        plan += [
            (name(T.ATTN_NORM, i), layer.input_layernorm.weight),
            (name(T.ATTN_Q, i), rope_interleave(attn.q_proj.weight.detach(), cfg.num_attention_heads)),
            (name(T.ATTN_K, i), rope_interleave(attn.k_proj.weight.detach(), kv_heads)),
            (name(T.ATTN_V, i), attn.v_proj.weight),
            (name(T.ATTN_OUT, i), attn.o_proj.weight),
            (name(T.FFN_NORM, i), layer.post_attention_layernorm.weight),
            (name(T.FFN_GATE, i), mlp.gate_proj.weight),
            (name(T.FFN_UP, i), mlp.up_proj.weight),
            (name(T.FFN_DOWN, i), mlp.down_proj.weight),
        ]
    plan.append((name(T.OUTPUT_NORM), model.model.norm.weight))
    if not getattr(cfg, "tie_word_embeddings", False):
        plan.append((name(T.OUTPUT), model.lm_head.weight))
    return plan


def storage_type(name: str, array: np.ndarray, dtype: str) -> str:
    """The GGUF type a tensor is stored in under ``dtype`` (see the module docstring)."""
    if array.ndim == 1 or dtype == "f32":
        return "f32"
    if dtype in ("q8_0", "q4_0", "q4_1") and array.shape[-1] % BLOCK:
        return "f16"
    if dtype.startswith("q4") and name.startswith(("token_embd", "output.")):
        return "q8_0"
    return dtype


# ---------------------------------------------------------------- tokenizer


def pre_tokenizer_name(tokenizer) -> tuple[str, str | None]:
    """llama.cpp's pre-tokenizer name for this tokenizer's split rules, and a warning when it is only a best guess."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str()).get("pre_tokenizer") or {}
    parts = spec.get("pretokenizers", [spec]) if spec.get("type") == "Sequence" else [spec]
    kinds = [p.get("type") for p in parts]
    if kinds == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt-2", None
    if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits"):
        return "smollm", None
    return "default", (
        f"pre-tokenizer {kinds} has no exact llama.cpp equivalent; llama.cpp's own tokenization may differ "
        "(tunelab's llamacpp back-end tokenizes with the run's tokenizer, so serving is unaffected)"
    )


def tokenizer_metadata(tokenizer, vocab_size: int) -> dict:
    """Vocabulary, token types, merges, special ids and templates of a byte-level BPE tokenizer (GGUF 'gpt2' model)."""
    import gguf

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model = spec.get("model", {})
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise TunelabError(
            f"--format gguf: converts byte-level BPE tokenizers; this one is {model.get('type')}"
            + (" with byte fallback (SentencePiece-style)" if model.get("byte_fallback") else "")
        )
    vocab = tokenizer.get_vocab()
    if max(vocab.values()) >= vocab_size:
        raise TunelabError(
            f"--format gguf: tokenizer has ids up to {max(vocab.values())} but the model's vocab_size is {vocab_size}"
        )
    added = {t["id"]: t for t in spec.get("added_tokens", [])}
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]
    types = [int(gguf.TokenType.UNUSED)] * vocab_size
    for text, i in vocab.items():
        tokens[i] = text
        types[i] = int(
            gguf.TokenType.NORMAL
            if i not in added
            else gguf.TokenType.CONTROL
            if added[i].get("special")
            else gguf.TokenType.USER_DEFINED
        )
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    probe = tokenizer("a")["input_ids"]
    pre, warning = pre_tokenizer_name(tokenizer)
    return {
        "tokens": tokens,
        "types": types,
        "merges": merges,
        "pre": pre,
        "warning": warning,
        "bos": tokenizer.bos_token_id,
        "eos": tokenizer.eos_token_id,
        "unk": tokenizer.unk_token_id,
        "pad": tokenizer.pad_token_id,
        "add_bos": tokenizer.bos_token_id is not None and probe[:1] == [tokenizer.bos_token_id],
        "add_eos": tokenizer.eos_token_id is not None and probe[-1:] == [tokenizer.eos_token_id],
        "chat_template": tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None,
    }


# ---------------------------------------------------------------- writing


def write(model, tokenizer, path: Path, dtype: str, name: str = "tunelab") -> dict:
    """Write ``model`` (a transformers Llama causal LM) and its tokenizer as one GGUF file; returns what was stored."""
    import gguf

    if dtype not in DTYPES:
        raise TunelabError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    check_model(model)
    cfg = model.config
    tok = tokenizer_metadata(tokenizer, cfg.vocab_size)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    rope = getattr(cfg, "rope_parameters", None) or {}
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads)
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(cfg, "rope_theta", None) or 10000.0)))
    writer.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
    writer.add_rope_dimension_count(head_dim)
    if head_dim != cfg.hidden_size // cfg.num_attention_heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(int(_file_type(dtype)))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_tokenizer(writer, tok)
    stored: dict[str, int] = {}
    for gname, tensor in tensor_plan(model):
        array = tensor.detach().float().cpu().numpy()
        kind = storage_type(gname, array, dtype)
        data = gguf.quants.quantize(array, _qtype(kind))
        writer.add_tensor(gname, data, raw_dtype=_qtype(kind) if kind != "f32" else None)
        stored[kind] = stored.get(kind, 0) + 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"dtype": dtype, "tensors_by_type": stored, "pre_tokenizer": tok["pre"], "warning": tok["warning"]}


def _add_tokenizer(writer, tok: dict) -> None:
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(tok["pre"])
    writer.add_token_list(tok["tokens"])
    writer.add_token_types(tok["types"])
    writer.add_token_merges(tok["merges"])
    for key, add in (
        ("bos", writer.add_bos_token_id),
        ("eos", writer.add_eos_token_id),
        ("unk", writer.add_unk_token_id),
        ("pad", writer.add_pad_token_id),
    ):
        if tok[key] is not None:
            add(int(tok[key]))
    writer.add_add_bos_token(bool(tok["add_bos"]))
    writer.add_add_eos_token(bool(tok["add_eos"]))
    if tok["chat_template"]:
        writer.add_chat_template(tok["chat_template"])


# ---------------------------------------------------------------- loading


def gguf_path(run_dir: Path, info: dict) -> Path:
    return Path(run_dir) / "model" / info["file"]


def load(run_dir: Path, cfg, labels, info: dict, backend: str):
    """torch: transformers reads the GGUF back (dequantized to fp32); llamacpp: llama.cpp runs the file itself."""
    from tunelab import runs
    from tunelab.models import load as model_load

    model_dir = Path(run_dir) / "model"
    tokenizer = model_load.load_tokenizer(model_load.Source(str(model_dir)))
    if backend == "llamacpp":
        from tunelab.export import llamacpp

        model = llamacpp.LlamaCppModel(gguf_path(run_dir, info), model_dir)
        return runs.LoadedRun(cfg, model, tokenizer, labels, [], backend=backend, engine=llamacpp.Engine(model))
    model, _ = model_load.load_model(model_load.Source(str(model_dir), info["file"]), "AutoModelForCausalLM")
    gen = model_load.load_generation_config(model_dir)
    if gen is not None:
        model.generation_config = gen
    return runs.LoadedRun(cfg, model.eval(), tokenizer, labels, [], backend=backend)


def save_side_files(model, tokenizer, model_dir: Path) -> None:
    """The HF config, generation config and tokenizer next to the .gguf (the run's tokenizer and limits)."""
    model.config.save_pretrained(str(model_dir))
    model.generation_config.save_pretrained(str(model_dir))
    tokenizer.save_pretrained(str(model_dir))


def check_task(task, run_dir) -> None:
    """GGUF holds a generating decoder for llama.cpp: the run's task must generate (the architecture is checked
    when the file is written)."""
    if not task.generates:
        raise TunelabError(
            f"{run_dir}: --format gguf exports runs of tasks that generate (causal LM, llama.cpp), not {task.name}; "
            "runs that score inputs (classification, NER) export with --format onnx"
        )


def file_name(dtype: str) -> str:
    return f"model-{dtype}.gguf"


def read_back(path: Path) -> tuple[dict, dict[str, tuple[str, list[int]]]]:
    """(metadata key -> value, tensor name -> (type, shape)) of a GGUF file, via the gguf package's reader."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    meta = {}
    for key, field in reader.fields.items():
        try:
            meta[key] = field.contents()
        except Exception:  # a field type the reader cannot turn into a Python value
            meta[key] = None
    return meta, {t.name: (t.tensor_type.name, [int(x) for x in t.shape]) for t in reader.tensors}
