"""SAM2's rotary-position attention rewritten with real arithmetic, so that it traces to ONNX.

The official ``RoPEAttention`` rotates with complex tensors, which the ONNX exporter cannot
trace; :class:`RopeAttention` rotates pairs of channels by precomputed cos/sin tables instead,
computing the same values from the same weights. Imports torch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = [
    "BLOCKWISE_MEMORY",
    "QUERY_CHUNK",
    "RopeAttention",
    "attend",
    "attend_memory_blocks",
    "rope_tables",
    "rotate",
]

#: Queries attended at a time. Memory attention compares 4,096 image tokens with up to
#: 7 x 4,096 memory tokens; unchunked, ONNX Runtime writes the whole score matrix (and its
#: softmax) per layer, hundreds of MB. In chunks the same values are computed with a quarter of
#: that memory, and much faster on the WebGPU EP (docs/benchmarks.md, "Attention in chunks").
QUERY_CHUNK = 1024

#: Attend to the memory one frame's block of keys at a time (:func:`attend_memory_blocks`)
#: instead of to all memory tokens in one product. Off: on the WebGPU EP it is 9% faster, on
#: the CPU EP 10% slower (docs/benchmarks.md, "Propagation, round five"), and one graph serves
#: both. Read at trace time: benchmarks and tests switch it.
BLOCKWISE_MEMORY = False

#: Extra value channels of ones whose products give each block's softmax denominators (four,
#: not one, so that the channel count stays a multiple of 4 for vectorised kernels).
_DENOMINATOR_CHANNELS = 4


def rope_tables(dim: int, height: int, width: int, theta: float) -> tuple[torch.Tensor, ...]:
    """cos and sin of SAM2's axial rotary encoding, ``(h * w, dim // 2)`` each.

    Parameters
    ----------
    dim : int
        Channels per attention head.
    height, width : int
        The feature map's size in tokens.
    theta : float
        The encoding's base frequency.

    Returns
    -------
    cos, sin : torch.Tensor
    """
    exponents = torch.arange(0, dim, 4)[: dim // 4].float() / dim
    freqs = 1.0 / (theta**exponents)
    t = torch.arange(height * width, dtype=torch.float32)
    t_x, t_y = t % width, torch.div(t, width, rounding_mode="floor")
    angles = torch.cat([torch.outer(t_x, freqs), torch.outer(t_y, freqs)], dim=-1)
    return torch.cos(angles), torch.sin(angles)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive pairs of ``x`` (..., tokens, dim) by the angles of ``cos``/``sin``.

    ``x``'s token count is a multiple of the table's: memories of several frames reuse the
    table of one frame, as the official ``rope_k_repeat`` does.

    Parameters
    ----------
    x : torch.Tensor
        Queries or keys, ``(..., tokens, dim)``.
    cos, sin : torch.Tensor
        From :func:`rope_tables`.

    Returns
    -------
    torch.Tensor
        Shaped as ``x``.
    """
    dim = x.shape[-1]
    per_frame = cos.shape[0]
    pairs = x.reshape(-1, per_frame, dim // 2, 2)
    real, imag = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack([real * cos - imag * sin, real * sin + imag * cos], dim=-1)
    return rotated.reshape(x.shape)


def attend(
    q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, chunk: int | None = QUERY_CHUNK
) -> torch.Tensor:
    """Scaled dot-product attention, ``chunk`` queries at a time (all at once when None).

    Each chunk sees every key, so the result equals one call; only the largest intermediate
    (chunk x keys scores) shrinks.

    Parameters
    ----------
    q : torch.Tensor
        ``(1, heads, queries, dim)``.
    keys, values : torch.Tensor
        ``(1, heads, tokens, dim)``.
    chunk : int or None
        Queries per chunk.

    Returns
    -------
    torch.Tensor
        ``(1, heads, queries, dim)``.
    """
    if chunk is None or q.shape[2] <= chunk:
        return nn.functional.scaled_dot_product_attention(q, keys, values)
    parts = [
        nn.functional.scaled_dot_product_attention(part, keys, values)
        for part in q.split(chunk, dim=2)
    ]
    return torch.cat(parts, dim=2)


def attend_memory_blocks(
    q: torch.Tensor,
    frame_keys: torch.Tensor,
    frame_values: torch.Tensor,
    pointer_keys: torch.Tensor,
    pointer_values: torch.Tensor,
    block: int,
    chunk: int | None = QUERY_CHUNK,
) -> torch.Tensor:
    """Scaled dot-product attention to memory frames and object pointers, frame by frame.

    Equal to one softmax over all keys (the frames' ``M x block`` tokens, then the pointers'),
    computed as a batch over frames: each frame's scores are exponentiated against their own
    row maximum and multiplied with that frame's values, with a column of ones beside them
    that gives the frame's softmax denominator; the frames are then combined by their maxima
    (the log-sum-exp rule) and joined with the pointers through one more softmax, in which
    the frames take part as a single token whose score is their log-sum-exp. The long product
    of every query with all ~28,700 memory tokens becomes M products of ``block`` tokens:
    ONNX Runtime's WebGPU kernels then run M times as many workgroups at once. Exported
    when :data:`BLOCKWISE_MEMORY` is set (docs/benchmarks.md, "Propagation, round five").

    Parameters
    ----------
    q : torch.Tensor
        ``(1, 1, queries, dim)`` (one head).
    frame_keys, frame_values : torch.Tensor
        ``(1, 1, M * block, dim)``, ``M >= 1``.
    pointer_keys, pointer_values : torch.Tensor
        ``(1, 1, P, dim)``; ``P`` may be 0.
    block : int
        Tokens per memory frame.
    chunk : int or None
        Queries per score matrix (``M x chunk x block`` floats); all at once when None.

    Returns
    -------
    torch.Tensor
        ``(1, 1, queries, dim)``.
    """
    dim = q.shape[-1]
    queries = q[0, 0] * dim**-0.5
    keys_t = frame_keys[0, 0].reshape(-1, block, dim).transpose(1, 2)
    values = frame_values[0, 0].reshape(-1, block, dim)
    ones = torch.ones_like(values[..., :_DENOMINATOR_CHANNELS])
    values = torch.cat([values, ones], dim=-1)
    sums, maxima = [], []
    for part in queries.split(chunk, dim=0) if chunk else (queries,):
        scores = torch.matmul(part, keys_t)  # (M, chunk, block)
        top = scores.amax(dim=-1, keepdim=True)
        sums.append(torch.matmul(torch.exp(scores - top), values))
        maxima.append(top)
    frame_sums = torch.cat(sums, dim=1)  # (M, queries, dim + 4): weighted values, denominator
    frame_max = torch.cat(maxima, dim=1)  # (M, queries, 1)
    best = frame_max.amax(dim=0, keepdim=True)
    total = (frame_sums * torch.exp(frame_max - best)).sum(dim=0)  # (queries, dim + 4)
    denominator = total[:, dim : dim + 1]
    frames_out = total[:, :dim] / denominator
    frames_lse = best[0] + torch.log(denominator)  # (queries, 1)
    # The pointers and one stand-in token for all frames: a zero key (score 0) whose score
    # becomes the frames' log-sum-exp, and a zero value (the frames' part is added after).
    zero = torch.zeros_like(queries[:1])
    keys = torch.cat([pointer_keys[0, 0], zero], dim=0)
    values = torch.cat([pointer_values[0, 0], zero], dim=0)
    stand_in = torch.cat([torch.zeros_like(pointer_keys[0, 0, :, 0]), torch.ones(1)])
    weights = torch.softmax(torch.matmul(queries, keys.T) + stand_in * frames_lse, dim=-1)
    out = torch.matmul(weights, values) + weights[:, -1:] * frames_out
    return out[None, None]


class _FusedAttention(torch.autograd.Function):
    """One-head attention exported as ONNX Runtime's ``com.microsoft.MultiHeadAttention``.

    ORT's CPU and WebGPU providers both implement it as one kernel, instead of a score matrix
    of every query against every memory token written out between MatMul, Softmax and MatMul.
    """

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = nn.functional.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])
        return out[:, 0]

    @staticmethod
    def symbolic(g: Any, q: Any, k: Any, v: Any) -> Any:
        out = g.op("com.microsoft::MultiHeadAttention", q, k, v, num_heads_i=1)
        out.setType(q.type())
        return out


class RopeAttention(nn.Module):
    """``RoPEAttention`` with real-valued rotation; the extra keys of ``k_plain`` are not rotated.

    Parameters
    ----------
    attn : sam2.modeling.sam.transformer.RoPEAttention
        The official module, whose projections are used.
    table : str
        Name of the cos/sin buffers (``<table>_cos``, ``<table>_sin``) in the owning module.
    fused : bool
        Write the attention as ONNX Runtime's fused ``MultiHeadAttention`` (one head only).
    """

    def __init__(self, attn: Any, table: str, fused: bool = False) -> None:
        super().__init__()
        self.attn = attn
        self.table = table
        self.fused = fused and attn.num_heads == 1

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        # (1, n, c) -> (1, heads, n, c / heads) with explicit sizes (no -1: n may be 0).
        heads = self.attn.num_heads
        if heads == 1:  # every SAM2 config; an unsqueeze also survives n == 0
            return x[:, None]
        return x.reshape(1, x.shape[1], heads, x.shape[2] // heads).transpose(1, 2)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        k_plain: tuple | None,
        rope: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        a = self.attn
        q = rotate(self._heads(a.q_proj(q)), *rope)
        keys = rotate(self._heads(a.k_proj(k)), *rope)
        values = self._heads(a.v_proj(v))
        if k_plain is not None and BLOCKWISE_MEMORY and not self.fused and a.num_heads == 1:
            out = attend_memory_blocks(
                q,
                keys,
                values,
                self._heads(a.k_proj(k_plain[0])),
                self._heads(a.v_proj(k_plain[1])),
                rope[0].shape[0],
                QUERY_CHUNK,
            )
            return a.out_proj(out[:, 0])
        if k_plain is not None:  # object-pointer tokens: no rotary encoding
            keys = torch.cat([keys, self._heads(a.k_proj(k_plain[0]))], dim=2)
            values = torch.cat([values, self._heads(a.v_proj(k_plain[1]))], dim=2)
        if self.fused:
            out = _FusedAttention.apply(q[:, 0], keys[:, 0], values[:, 0])
            return a.out_proj(out)
        out = attend(q, keys, values, QUERY_CHUNK)  # read at trace time: benchmarks vary it
        return a.out_proj(a._recombine_heads(out))
