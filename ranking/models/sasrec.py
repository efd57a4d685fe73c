"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018).

Trained with the full-softmax cross-entropy of :mod:`ranking.losses` this is the "SASRec+" of
Klenitskiy & Vasilev (RecSys 2023); with one sampled negative and binary cross-entropy it is the
original model.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ranking.data import PAD
from ranking.models.base import SequenceModel, TransformerBlock, attention_mask, scale_embedding

__all__ = ["SASRec"]


class SASRec(SequenceModel):
    """Causal self-attention over the item sequence.

    Parameters
    ----------
    n_items:
        Catalog size; the item table has ``n_items + 1`` rows (row 0 = padding) and is shared by
        the input and the output layer.
    hidden:
        Embedding and hidden size ``D``.
    n_blocks, n_heads:
        Self-attention blocks and heads per block.
    dropout:
        Dropout on the embeddings, attention weights and residual branches.
    max_len:
        The longest input; one learned positional embedding per position. Positions are counted
        from the right end of the (left-padded) input, so the most recent item always gets the
        same position whatever the input width.
    item_residual_rank:
        Rank of a learned low-rank residual added to every item's vector (0 = none; see
        :class:`~ranking.models.base.ItemEmbedding`).
    content:
        Optional frozen ``[n_items, C]`` content vectors (see :class:`~ranking.models.base.ItemEmbedding`).

    The blocks use the pre-LayerNorm layout (LayerNorm before attention and the feed-forward part,
    as in the authors' code, where the attention query is normalised), followed by a final
    LayerNorm. Keys at padding positions are masked out and the hidden states at padding positions
    are zeroed after every block (the "timeline mask"), so the output of a position does not depend
    on how much padding precedes the sequence.
    """

    def __init__(
        self,
        n_items: int,
        hidden: int = 64,
        n_blocks: int = 2,
        n_heads: int = 1,
        dropout: float = 0.1,
        max_len: int = 50,
        item_residual_rank: int = 0,
        content: Tensor | None = None,
    ) -> None:
        super().__init__(n_items, hidden, content, item_residual_rank)
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        self.max_len = max_len
        self.pos_emb = nn.Embedding(max_len, hidden)
        nn.init.normal_(self.pos_emb.weight, std=hidden**-0.5)
        self.emb_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(hidden, n_heads, dropout) for _ in range(n_blocks)
        )
        self.final_ln = nn.LayerNorm(hidden)

    def forward(self, inputs: Tensor) -> Tensor:
        """``inputs [B, L]`` (shifted ids, left-padded, ``L <= max_len``) -> ``hidden [B, L, D]``."""
        length = inputs.shape[1]
        if length > self.max_len:
            raise ValueError(f"input length {length} exceeds max_len={self.max_len}")
        real = (inputs != PAD).unsqueeze(-1)
        positions = torch.arange(self.max_len - length, self.max_len, device=inputs.device)
        x = scale_embedding(self.item_emb(inputs)) + self.pos_emb(positions)[None]
        x = self.emb_drop(x) * real
        mask = attention_mask(inputs)
        for block in self.blocks:
            x = block(x, mask) * real
        return self.final_ln(x) * real
