"""Colluding attacks that a single client cannot mount alone, simulated on the server.

"A little is enough" (Baruch et al., NeurIPS 2019): the ``f`` Byzantine clients of a round all send
``mu - z sigma``, where ``mu`` and ``sigma`` are the coordinate-wise mean and standard deviation of
the round's updates. The shift stays inside the spread of honest updates, so distance- and
median-based defences do not see it. ``z`` is the paper's largest value that still keeps the
attackers among the majority, ``Phi^-1((n - s) / n)`` with ``s = floor(n / 2 + 1) - f``, times
``fl.byzantine-factor``.

The attack needs every honest update, so it is simulated where they meet: the Byzantine clients
train honestly and flag their reply (metric ``byzantine``); before aggregation the server replaces
the flagged updates. The flag is used only here, never by an aggregator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import norm

from fl.payload_format import DecodedUpdate
from fl.update_matrix import UpdateMatrix

__all__ = ["alie_z", "little_is_enough"]


def alie_z(n: int, f: int) -> float:
    """Baruch et al.'s ``z_max`` for ``n`` updates of which ``f`` are Byzantine."""
    s = math.floor(n / 2 + 1) - f
    return float(norm.ppf(min(max((n - s) / n, 0.5), 1 - 1e-9)))


def little_is_enough(
    global_state: Mapping[str, np.ndarray],
    updates: Sequence[DecodedUpdate],
    byzantine: Sequence[bool],
    factor: float = 1.0,
) -> list[DecodedUpdate]:
    """``updates`` with every Byzantine one replaced by ``mu - z sigma`` on the rows it sent."""
    attackers = np.flatnonzero(np.asarray(byzantine, dtype=bool))
    if not len(attackers):
        return list(updates)
    matrix = UpdateMatrix.from_updates(global_state, updates)
    masked = matrix.masked().astype(np.float64)
    sent = ~np.isnan(masked)
    count = np.maximum(sent.sum(axis=0), 1)  # a coordinate nobody sent gets mu = sigma = 0
    values = np.where(sent, masked, 0.0)
    mu = values.sum(axis=0) / count
    sigma = np.sqrt(np.where(sent, (values - mu) ** 2, 0.0).sum(axis=0) / count)
    malicious = mu - alie_z(len(updates), len(attackers)) * factor * sigma
    out = list(updates)
    for i in attackers:
        delta = malicious if matrix.sent is None else np.where(matrix.sent[i], malicious, 0.0)
        state, touched = matrix.apply(global_state, delta), updates[i][1]
        for key, rows in touched.items():  # a row-sparse key holds its sent rows only
            state[key] = state[key][np.asarray(rows, dtype=np.int64)]
        out[i] = (state, touched)
    return out
