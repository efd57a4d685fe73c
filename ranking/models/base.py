"""Shared parts of the sequence models: the item table, attention masks and the base class.

Every sequence model of the ranking tier reads a left-padded ``int64 [B, L]`` batch of item ids
shifted by +1 (``0`` = :data:`ranking.data.PAD`, see :func:`ranking.data.pad_left`) and returns
one hidden vector per position, ``[B, L, D]``. The hidden vector at position ``t`` summarises the
items at positions ``<= t`` only (causality) and is the query for the item at ``t + 1``: its
scores are dot products with the same item table that embeds the inputs (tied weights),
:meth:`SequenceModel.logits`. Hidden vectors at padding positions are zero.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ranking.data import PAD

__all__ = [
    "ItemEmbedding",
    "SequenceModel",
    "TransformerBlock",
    "attention_mask",
    "exporting",
    "run_left_padded_rnn",
    "scale_embedding",
]


def exporting() -> bool:
    """Whether the model is being traced or exported (TorchScript, ``torch.export``, ONNX).

    The models then take shape-static code paths (no packed sequences, no data-dependent shapes)
    that compute the same outputs as their eager paths; see :mod:`ranking.export`.
    """
    return torch.jit.is_tracing() or torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export()


class ItemEmbedding(nn.Module):
    """The item table, ``[n_items + 1, dim]`` with row ``0`` the (all-zero) padding row.

    With ``content`` (a frozen ``[n_items, C]`` matrix, e.g. text or image vectors) every item's
    vector is its free ID embedding plus a learned linear projection of its content vector, both
    where items are read (inputs) and where they are scored (outputs). The content matrix is a
    non-persistent buffer: it is not part of :meth:`state_dict` (it is frozen and the same for
    every copy of the model) and gets no gradient; only the projection is learned.

    With ``residual_rank`` r > 0 every item's vector also gets a low-rank residual ``U[i] V``:
    ``U`` (``residual_rows``, ``[n_items + 1, r]``, starting at 0; row 0, padding, is not used) and
    ``V`` (``residual_basis``, ``[r, dim]``, random). With the ID table kept fixed (e.g.
    content-initialised and frozen in federated training) each item's correction then has r free
    coordinates instead of ``dim``: what LoRA (Hu et al., ICLR 2022) does for weight matrices.
    """

    def __init__(
        self, n_items: int, dim: int, content: Tensor | None = None, residual_rank: int = 0
    ) -> None:
        super().__init__()
        if n_items < 1 or dim < 1:
            raise ValueError(f"need n_items >= 1 and dim >= 1, got {n_items} and {dim}")
        if residual_rank < 0:
            raise ValueError(f"item_residual_rank must be >= 0, got {residual_rank}")
        self.n_items = n_items
        self.dim = dim
        self.ids = nn.Embedding(n_items + 1, dim, padding_idx=PAD)
        nn.init.normal_(self.ids.weight, std=dim**-0.5)
        with torch.no_grad():
            self.ids.weight[PAD].zero_()
        self.content_proj: nn.Linear | None = None
        if content is not None:
            content = torch.as_tensor(content, dtype=torch.float32).detach()
            if content.ndim != 2 or content.shape[0] != n_items:
                raise ValueError(
                    f"content must have shape [n_items={n_items}, C], got {tuple(content.shape)}"
                )
            self.register_buffer("content", content.clone(), persistent=False)
            self.content_proj = nn.Linear(content.shape[1], dim, bias=False)
            # Content entries of unit scale give projections of the ID embeddings' scale.
            nn.init.normal_(self.content_proj.weight, std=(content.shape[1] * dim) ** -0.5)
        self.residual_rows: nn.Embedding | None = None
        self.residual_basis: nn.Linear | None = None
        if residual_rank:
            self.residual_rows = nn.Embedding(n_items + 1, residual_rank, padding_idx=PAD)
            nn.init.zeros_(self.residual_rows.weight)
            self.residual_basis = nn.Linear(residual_rank, dim, bias=False)
            # unit-scale rows of U give residuals of about unit scale
            nn.init.normal_(self.residual_basis.weight, std=residual_rank**-0.5)

    @property
    def content_dim(self) -> int | None:
        return None if self.content_proj is None else self.content_proj.in_features

    def table(self) -> Tensor:
        """The full item table ``[n_items + 1, dim]`` (row 0 = padding, all zero)."""
        weight = self.ids.weight
        if self.residual_rows is not None and self.residual_basis is not None:
            # the padding row gets no residual, whatever row 0 of U holds (noise under DP)
            residual = self.residual_basis(self.residual_rows.weight[1:])
            weight = weight + torch.cat([residual.new_zeros(1, self.dim), residual], dim=0)
        if self.content_proj is None:
            return weight
        projected = self.content_proj(self.content)
        return weight + torch.cat([projected.new_zeros(1, self.dim), projected], dim=0)

    def forward(self, inputs: Tensor, table: Tensor | None = None) -> Tensor:
        """Embed ``inputs`` (shifted ids, 0 = PAD) -> ``[..., dim]``; PAD rows are zero."""
        table = self.table() if table is None else table
        return nn.functional.embedding(inputs, table, padding_idx=PAD)


class SequenceModel(nn.Module):
    """Base class: an item table plus an encoder ``forward(inputs [B, L]) -> hidden [B, L, D]``."""

    item_emb: ItemEmbedding

    def __init__(
        self,
        n_items: int,
        hidden: int,
        content: Tensor | None = None,
        item_residual_rank: int = 0,
    ) -> None:
        super().__init__()
        self.n_items = n_items
        self.hidden = hidden
        self.item_emb = ItemEmbedding(n_items, hidden, content, item_residual_rank)

    def item_table(self) -> Tensor:
        """``[n_items + 1, D]``: row ``i + 1`` is item ``i``; row 0 is padding."""
        return self.item_emb.table()

    def forward(self, inputs: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def logits(self, hidden: Tensor, table: Tensor | None = None) -> Tensor:
        """Scores of every real item (the padding row excluded): ``hidden @ table[1:].T``."""
        table = self.item_table() if table is None else table
        return hidden @ table[1:].T

    def last_hidden(self, inputs: Tensor) -> Tensor:
        """The hidden vector of the last position, ``[B, D]`` (inputs are left-padded)."""
        return self.forward(inputs)[:, -1]


def attention_mask(inputs: Tensor, window: int | None = None) -> Tensor:
    """Boolean ``[B, 1, L, L]`` mask (``True`` = may attend) for causal self-attention.

    Query ``t`` may attend to key ``s`` when ``s <= t``, key ``s`` is a real item (not PAD) and,
    with ``window``, ``s > t - window``. Every query may attend to itself, so no row is empty (the
    outputs at PAD positions are discarded by the caller).
    """
    length = inputs.shape[1]
    pos = torch.arange(length, device=inputs.device)
    allowed = pos[None, :] <= pos[:, None]
    if window is not None:
        allowed = allowed & (pos[None, :] > pos[:, None] - window)
    real = inputs != PAD
    mask = allowed[None, :, :] & real[:, None, :]
    mask = mask | torch.eye(length, dtype=torch.bool, device=inputs.device)[None]
    return mask[:, None]


class TransformerBlock(nn.Module):
    """A pre-LayerNorm self-attention block: ``x + Attn(LN(x))`` then ``x + FFN(LN(x))``.

    The feed-forward part is SASRec's point-wise two-layer network (inner size ``ffn_dim``,
    ReLU); dropout is applied to the attention weights and to both residual branches.
    """

    def __init__(
        self, hidden: int, n_heads: int = 1, dropout: float = 0.1, ffn_dim: int | None = None
    ) -> None:
        super().__init__()
        if hidden % n_heads:
            raise ValueError(f"hidden={hidden} is not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.dropout = dropout
        self.ln_attn = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.ln_ffn = nn.LayerNorm(hidden)
        inner = ffn_dim or hidden
        self.ffn = nn.Sequential(
            nn.Linear(hidden, inner), nn.ReLU(), nn.Dropout(dropout), nn.Linear(inner, hidden)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """``x [B, L, D]``, ``mask`` as from :func:`attention_mask`."""
        b, length, d = x.shape
        q, k, v = self.qkv(self.ln_attn(x)).chunk(3, dim=-1)
        heads = (
            t.view(b, length, self.n_heads, d // self.n_heads).transpose(1, 2) for t in (q, k, v)
        )
        attn = nn.functional.scaled_dot_product_attention(
            *heads, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        x = x + self.drop(self.proj(attn.transpose(1, 2).reshape(b, length, d)))
        return x + self.drop(self.ffn(self.ln_ffn(x)))


def run_left_padded_rnn(rnn: nn.RNNBase, x: Tensor, lengths: Tensor) -> Tensor:
    """Run a batch-first ``rnn`` over left-padded sequences as if the padding were not there.

    ``x [B, L, D]`` holds each row's ``lengths[b]`` real steps right-aligned. The rows are rotated
    so that the real steps come first, packed (so the recurrence starts from the zero state at a
    row's first real item), run, and rotated back. Outputs at padding positions are zero, except
    for rows without any real step, whose last position holds the output for a zero input.
    """
    b, length, _ = x.shape
    pos = torch.arange(length, device=x.device)[None, :]
    shift = (length - lengths).to(x.device)[:, None]
    forward_idx = (pos + shift) % length
    rotated = x.gather(1, forward_idx[..., None].expand_as(x))
    if exporting():
        # Shape-static equivalent for tracing/export: the real steps come first, so running the
        # unpacked rnn gives the same outputs there; the steps after them are zeroed as packing does.
        out, _ = rnn(rotated)
        out = out * (pos < lengths.clamp(min=1).to(x.device)[:, None])[..., None]
        back_idx = (pos - shift) % length
        return out.gather(1, back_idx[..., None].expand(b, length, out.shape[-1]))
    packed = pack_padded_sequence(
        rotated, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
    )
    out, _ = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=length)
    back_idx = (pos - shift) % length
    return out.gather(1, back_idx[..., None].expand(b, length, out.shape[-1]))


def scale_embedding(x: Tensor) -> Tensor:
    """Multiply embeddings by ``sqrt(D)`` (as in the Transformer and SASRec)."""
    return x * math.sqrt(x.shape[-1])
