"""Padded sequence batches: items shifted by +1, with ``0`` (:data:`PAD`) as padding."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ranking.data.interactions import UserSequences

__all__ = ["PAD", "pad_left", "sequence_windows"]

PAD = 0
"""Padding value of :func:`pad_left` batches (items are shifted by +1)."""


def pad_left(sequences: Sequence[np.ndarray], max_len: int) -> np.ndarray:
    """Left-pad (with :data:`PAD`) and left-truncate sequences into an ``int64 [B, max_len]`` array.

    Items are shifted by +1 so that 0 is free for padding; the most recent ``max_len`` items are
    kept, right-aligned.
    """
    out = np.full((len(sequences), max_len), PAD, dtype=np.int64)
    for row, seq in enumerate(sequences):
        tail = np.asarray(seq)[-max_len:] if max_len else np.empty(0, dtype=np.int64)
        if len(tail):
            out[row, max_len - len(tail) :] = tail + 1
    return out


def sequence_windows(
    sequences: UserSequences,
    max_len: int,
    *,
    cover_history: bool = True,
    users: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Next-item training windows: ``(inputs, targets)``, both padded ``[N, max_len]``.

    ``targets[:, t]`` is the item following ``inputs[:, t]`` (PAD where there is none). With
    ``cover_history=False`` each user contributes one window over the most recent ``max_len + 1``
    items (the SASRec protocol). With ``cover_history=True`` further windows, ending every
    ``max_len`` items earlier, cover the whole history, so long histories are not thrown away.
    """
    if max_len < 1:
        raise ValueError("max_len must be >= 1")
    users = np.arange(len(sequences)) if users is None else np.asarray(users)
    inputs: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    for u in users.tolist():
        seq = sequences[u]
        n = len(seq)
        if n < 2:
            continue
        end = n
        while end >= 2:
            window = seq[max(0, end - max_len - 1) : end]
            inputs.append(window[:-1])
            targets.append(window[1:])
            if not cover_history:
                break
            end -= max_len
    return pad_left(inputs, max_len), pad_left(targets, max_len)
