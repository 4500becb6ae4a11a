"""``/v1/embeddings``: mean-pooled last hidden states of any served torch model (an encoder or a decoder run).

The vector of a text is the mean of the model's last-layer hidden states over its tokens (padding excluded), in
float32: what sentence-transformers' mean pooling computes for MiniLM, applied to whatever model a run holds.
Deterministic: the same input gives the same vector, alone or in a batch (right padding, masked mean).
"""

from __future__ import annotations

import base64

import torch


@torch.no_grad()
def embed(model, pad_id: int, rows: list[list[int]]) -> list[torch.Tensor]:
    """One (hidden,) float32 vector per row of token ids."""
    device = next(model.parameters()).device
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad_id] * (width - len(r)) for r in rows], device=device)  # (batch, width)
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
    out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    hidden = out.hidden_states[-1].float()  # (batch, width, hidden)
    m = mask[:, :, None].to(hidden.dtype)
    pooled = (hidden * m).sum(1) / m.sum(1)  # (batch, hidden)
    return list(pooled.cpu())


def encode(vector: torch.Tensor, encoding_format: str):
    """OpenAI's ``embedding`` value: a list of floats, or base64 of little-endian float32."""
    if encoding_format == "base64":
        return base64.b64encode(vector.numpy().astype("<f4").tobytes()).decode()
    return vector.tolist()
