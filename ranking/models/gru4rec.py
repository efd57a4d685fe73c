"""GRU4Rec-style recurrent sequence encoder (Hidasi et al., ICLR 2016), GRU or LSTM cell.

Here the recurrent network reads a user's item sequence and is trained on next-item prediction at
every position with the losses of :mod:`ranking.losses` (full softmax cross-entropy by default,
which Hidasi & Czapp 2023 recommend for GRU4Rec as well), with the item table shared between the
input and the output layer.
"""

from __future__ import annotations

from torch import Tensor, nn

from ranking.data import PAD
from ranking.models.base import SequenceModel, run_left_padded_rnn

__all__ = ["GRU4Rec"]

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


class GRU4Rec(SequenceModel):
    """Item embeddings -> dropout -> ``n_layers`` of GRU/LSTM -> dropout -> projection to ``D``.

    Parameters
    ----------
    n_items:
        Catalog size (the item table has ``n_items + 1`` rows, row 0 = padding).
    hidden:
        Embedding size ``D`` (the size the outputs are scored in).
    cell:
        ``"gru"`` or ``"lstm"``.
    n_layers:
        Stacked recurrent layers.
    rnn_hidden:
        Size of the recurrent state (default ``hidden``); a linear layer maps it back to ``D``
        when it differs.
    dropout:
        Dropout on the input embeddings and on the recurrent outputs.
    item_residual_rank:
        Rank of a learned low-rank residual added to every item's vector (0 = none; see
        :class:`~ranking.models.base.ItemEmbedding`).
    content:
        Optional frozen ``[n_items, C]`` content vectors.

    Padding is skipped, not fed: each row's recurrence starts at its first real item (see
    :func:`~ranking.models.base.run_left_padded_rnn`), so outputs do not depend on the padding.
    """

    def __init__(
        self,
        n_items: int,
        hidden: int = 64,
        cell: str = "gru",
        n_layers: int = 1,
        rnn_hidden: int | None = None,
        dropout: float = 0.1,
        item_residual_rank: int = 0,
        content: Tensor | None = None,
    ) -> None:
        super().__init__(n_items, hidden, content, item_residual_rank)
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
        self.cell = cell
        rnn_hidden = rnn_hidden or hidden
        self.rnn = CELLS[cell](hidden, rnn_hidden, num_layers=n_layers, batch_first=True)
        self.in_drop = nn.Dropout(dropout)
        self.out_drop = nn.Dropout(dropout)
        self.out = nn.Identity() if rnn_hidden == hidden else nn.Linear(rnn_hidden, hidden)

    def forward(self, inputs: Tensor) -> Tensor:
        """``inputs [B, L]`` (shifted ids, left-padded) -> ``hidden [B, L, D]``."""
        real = inputs != PAD
        x = self.in_drop(self.item_emb(inputs))
        out = run_left_padded_rnn(self.rnn, x, real.sum(dim=1))
        return self.out(self.out_drop(out)) * real.unsqueeze(-1)
