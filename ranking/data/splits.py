"""Train / validation / test splits of an interaction log, and held-out evaluation users."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ranking.data.interactions import Interactions
from ranking.errors import DataError

__all__ = ["Split", "holdout_users", "leave_one_out", "temporal_split"]


@dataclass(frozen=True, eq=False)
class Split:
    """Train / validation / test interactions over the same id spaces.

    ``valid`` and ``test`` hold the *targets*. The history a model may see when predicting a
    target is given by :meth:`history`.
    """

    kind: str
    train: Interactions
    valid: Interactions
    test: Interactions

    def history(self, stage: str) -> Interactions:
        """Everything a model may see before predicting ``stage`` ("valid" or "test") targets."""
        if stage == "valid":
            return self.train
        if stage == "test":
            return self.train.concat(self.valid)
        raise ValueError(f"stage must be 'valid' or 'test', got {stage!r}")

    def targets(self, stage: str) -> Interactions:
        if stage == "valid":
            return self.valid
        if stage == "test":
            return self.test
        raise ValueError(f"stage must be 'valid' or 'test', got {stage!r}")


def leave_one_out(interactions: Interactions, min_len: int = 3) -> Split:
    """Leave-one-out split as in SASRec / BERT4Rec.

    For each user with at least ``min_len`` (default 3) interactions the last one is the test
    target and the second-to-last the validation target; everything earlier is training data.
    Users with fewer interactions keep all of them in training and are not evaluated.
    """
    if min_len < 3:
        raise ValueError("leave-one-out needs min_len >= 3 (one train, one valid, one test item)")
    seqs = interactions.sequences()
    lengths = seqs.lengths
    eligible = lengths >= min_len
    ends = seqs.indptr[1:]
    test_rows = (ends - 1)[eligible]
    valid_rows = (ends - 2)[eligible]
    role = np.zeros(len(interactions), dtype=np.int8)
    role[valid_rows] = 1
    role[test_rows] = 2
    return Split(
        kind="leave_one_out",
        train=interactions.take(role == 0),
        valid=interactions.take(role == 1),
        test=interactions.take(role == 2),
    )


def temporal_split(
    interactions: Interactions, valid_fraction: float = 0.1, test_fraction: float = 0.1
) -> Split:
    """Global temporal split: the last ``test_fraction`` of events (by time) are test targets,
    the ``valid_fraction`` before them validation targets, everything earlier training data.

    The cut points are timestamps, so all events at the same instant land in the same part.
    """
    if not (
        0 <= valid_fraction < 1 and 0 < test_fraction < 1 and valid_fraction + test_fraction < 1
    ):
        raise ValueError("need 0 <= valid_fraction, 0 < test_fraction and their sum < 1")
    ts = interactions.timestamp
    t_valid = np.quantile(ts, 1.0 - valid_fraction - test_fraction)
    t_test = np.quantile(ts, 1.0 - test_fraction)
    return Split(
        kind="temporal",
        train=interactions.take(ts < t_valid),
        valid=interactions.take((ts >= t_valid) & (ts < t_test)),
        test=interactions.take(ts >= t_test),
    )


def holdout_users(
    interactions: Interactions, fraction: float, seed: int = 0, min_len: int = 3
) -> tuple[Interactions, Split]:
    """Hold out a random ``fraction`` of users for evaluation only.

    Returns ``(train, heldout)``: ``train`` holds every event of the other users (what clients or a
    central model train on); ``heldout`` is a leave-one-out :class:`Split` over the held-out users
    (with at least ``min_len`` events), whose ``train`` part is history for evaluation only. This is
    the protocol of federated runs, where the server evaluates on users that never trained.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
    lengths = interactions.sequences().lengths
    candidates = np.flatnonzero(lengths >= min_len)
    n_out = max(1, int(round(fraction * len(candidates))))
    if len(candidates) < 2:
        raise DataError("too few users with enough interactions to hold any out")
    chosen = np.random.default_rng(seed).choice(
        candidates, size=min(n_out, len(candidates) - 1), replace=False
    )
    is_out = np.zeros(interactions.n_users, dtype=bool)
    is_out[chosen] = True
    rows_out = is_out[interactions.user]
    return interactions.take(~rows_out), leave_one_out(interactions.take(rows_out), min_len=min_len)
