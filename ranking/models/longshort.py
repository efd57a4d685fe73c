"""A long- and short-term interest model: the live session queries the long-term history.

In the spirit of SHAN (Ying et al., IJCAI 2018) and SLi-Rec (Yu et al., IJCAI 2019): a *session*
encoder summarises the most recent ``short_len`` items into a short-term vector; that vector is the
query of an attention over the embeddings of the whole input window (the long-term history); a
learned sigmoid gate mixes the short- and the long-term vector, dimension by dimension.

Everything is computed for every position ``t`` at once and causally: the short-term vector of
position ``t`` reads positions ``t - short_len + 1 .. t`` and the long-term attention reads
positions ``<= t``, so the model trains on all positions like SASRec.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ranking.data import PAD
from ranking.models.base import (
    SequenceModel,
    TransformerBlock,
    attention_mask,
    exporting,
    run_left_padded_rnn,
    scale_embedding,
)

__all__ = ["LongShort"]

SESSION_ENCODERS = ("gru", "attention")


class LongShort(SequenceModel):
    """Session encoder + attention over the long-term history + gated fusion.

    Parameters
    ----------
    n_items:
        Catalog size (the item table has ``n_items + 1`` rows, row 0 = padding).
    hidden:
        Embedding and hidden size ``D``.
    short_len:
        How many of the most recent items the session encoder reads.
    session_encoder:
        ``"gru"``: a GRU over the last ``short_len`` items, its final state is the short-term
        vector. ``"attention"``: a causal self-attention block restricted to a sliding window of
        ``short_len`` items, with learned positional embeddings.
    n_heads:
        Heads of the long-term attention (and of the attention session encoder).
    dropout:
        Dropout on the embeddings and the fused output.
    max_len:
        The longest input (sizes the positional embeddings of the attention session encoder).
    item_residual_rank:
        Rank of a learned low-rank residual added to every item's vector (0 = none; see
        :class:`~ranking.models.base.ItemEmbedding`).
    content:
        Optional frozen ``[n_items, C]`` content vectors.
    """

    def __init__(
        self,
        n_items: int,
        hidden: int = 64,
        short_len: int = 5,
        session_encoder: str = "gru",
        n_heads: int = 1,
        dropout: float = 0.1,
        max_len: int = 50,
        item_residual_rank: int = 0,
        content: Tensor | None = None,
    ) -> None:
        super().__init__(n_items, hidden, content, item_residual_rank)
        if short_len < 1:
            raise ValueError(f"short_len must be >= 1, got {short_len}")
        if session_encoder not in SESSION_ENCODERS:
            raise ValueError(
                f"session_encoder must be one of {SESSION_ENCODERS}, got {session_encoder!r}"
            )
        if hidden % n_heads:
            raise ValueError(f"hidden={hidden} is not divisible by n_heads={n_heads}")
        self.short_len = short_len
        self.session_encoder = session_encoder
        self.n_heads = n_heads
        self.max_len = max_len
        self.emb_drop = nn.Dropout(dropout)
        if session_encoder == "gru":
            self.short_rnn = nn.GRU(hidden, hidden, batch_first=True)
        else:
            self.pos_emb = nn.Embedding(max_len, hidden)
            nn.init.normal_(self.pos_emb.weight, std=hidden**-0.5)
            self.short_block = TransformerBlock(hidden, n_heads, dropout)
        self.short_ln = nn.LayerNorm(hidden)
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.long_out = nn.Linear(hidden, hidden)
        self.gate = nn.Linear(2 * hidden, hidden)
        self.out_drop = nn.Dropout(dropout)
        self.final_ln = nn.LayerNorm(hidden)

    # ---- the two interests -----------------------------------------------------------------

    def _short_gru(self, inputs: Tensor, emb: Tensor) -> Tensor:
        """Per real position, a GRU over that position's window of the last ``short_len`` items."""
        b, length, d = emb.shape
        s = self.short_len
        real = inputs != PAD
        if exporting():
            return self._short_gru_dense(real, emb)
        out = emb.new_zeros(b, length, d)
        rows, cols = real.nonzero(as_tuple=True)
        if rows.numel() == 0:
            return out
        # Window of position t: positions t-s+1 .. t (left-padded inputs, so PAD-prefixed).
        padded_emb = torch.cat([emb.new_zeros(b, s - 1, d), emb], dim=1)
        padded_real = torch.cat([real.new_zeros(b, s - 1), real], dim=1)
        offsets = torch.arange(s, device=inputs.device)
        idx = cols[:, None] + offsets[None, :]  # positions in the padded arrays
        windows = padded_emb[rows[:, None], idx]  # [M, s, D]
        lengths = padded_real[rows[:, None], idx].sum(dim=1)
        states = run_left_padded_rnn(self.short_rnn, windows, lengths)[:, -1]
        out[rows, cols] = states
        return out

    def _short_gru_dense(self, real: Tensor, emb: Tensor) -> Tensor:
        """:meth:`_short_gru` for tracing/export: every position's window (no data-dependent
        shapes), the outputs at padding positions zeroed afterwards."""
        b, length, d = emb.shape
        s = self.short_len
        padded_emb = torch.cat([emb.new_zeros(b, s - 1, d), emb], dim=1)
        padded_real = torch.cat([real.new_zeros(b, s - 1), real], dim=1)
        pos = torch.arange(length, device=emb.device)
        idx = pos[:, None] + torch.arange(s, device=emb.device)[None, :]  # [L, s]
        windows = padded_emb[:, idx].reshape(b * length, s, d)
        lengths = padded_real[:, idx].sum(dim=-1).reshape(b * length)
        states = run_left_padded_rnn(self.short_rnn, windows, lengths)[:, -1]
        return states.reshape(b, length, d) * real.unsqueeze(-1)

    def _short_attention(self, inputs: Tensor, emb: Tensor) -> Tensor:
        length = inputs.shape[1]
        if length > self.max_len:
            raise ValueError(f"input length {length} exceeds max_len={self.max_len}")
        positions = torch.arange(self.max_len - length, self.max_len, device=inputs.device)
        x = emb + self.pos_emb(positions)[None]
        return self.short_block(x, attention_mask(inputs, window=self.short_len))

    def _long(self, inputs: Tensor, query: Tensor, emb: Tensor) -> Tensor:
        """Attention of each position's query over the item embeddings at positions ``<= t``."""
        b, length, d = emb.shape
        h = self.n_heads

        def heads(x: Tensor) -> Tensor:
            return x.view(b, length, h, d // h).transpose(1, 2)

        attn = nn.functional.scaled_dot_product_attention(
            heads(self.query(query)),
            heads(self.key(emb)),
            heads(self.value(emb)),
            attn_mask=attention_mask(inputs),
        )
        return self.long_out(attn.transpose(1, 2).reshape(b, length, d))

    # ---- forward ---------------------------------------------------------------------------

    def forward(self, inputs: Tensor) -> Tensor:
        """``inputs [B, L]`` (shifted ids, left-padded) -> ``hidden [B, L, D]``."""
        real = (inputs != PAD).unsqueeze(-1)
        emb = self.emb_drop(scale_embedding(self.item_emb(inputs))) * real
        if self.session_encoder == "gru":
            short = self._short_gru(inputs, emb)
        else:
            short = self._short_attention(inputs, emb)
        short = self.short_ln(short)
        long = self._long(inputs, short, emb)
        gate = torch.sigmoid(self.gate(torch.cat([short, long], dim=-1)))
        fused = gate * short + (1.0 - gate) * long
        return self.final_ln(self.out_drop(fused)) * real
