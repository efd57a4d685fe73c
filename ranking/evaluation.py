"""The one evaluator: every model of the ranking tier is scored by :func:`evaluate`.

Protocol
--------
* Every row of ``split.targets(stage)`` is one **query**: predict that item for that user given the
  user's history, which is the user's part of ``split.history(stage)`` (everything the model may see
  for that stage, in time order). With a temporal split a user can own several targets; each is a
  separate query over the same history (the history is not updated between them). Metrics are
  averaged over queries; for a leave-one-out split there is exactly one query per evaluated user.
* **Full ranking** (``protocol="full"``): the target is ranked against the whole catalog.
* **Sampled ranking** (``protocol="sampled"``, the SASRec paper's definition): the target is ranked
  against ``n_negatives`` items drawn without replacement from the items the user has not
  interacted with, i.e. among ``n_negatives + 1`` candidates.
* **Ties** are pessimistic: the rank of a target is the number of other candidates with a score
  *greater than or equal to* its own, so a target tied with other items is placed behind all of
  them. The result never depends on item order or a sort's tie handling, and a scorer whose scores
  collapse to a constant gets the worst rank instead of looking perfect.
* **Seen items**: with ``filter_seen=True`` the items of the user's history are removed from the
  candidates (full: their scores are set to ``-inf``; sampled: they are never drawn) -- except the
  target itself, which is always ranked even when it is a repeat. ``exclude_items`` are removed
  from the candidates of every query in the same way.
* **Beyond-accuracy** metrics (coverage, novelty, average popularity) describe the top-K lists over
  the full catalog (with seen and excluded items removed as above) under both protocols.
  Popularity is counted on ``split.history(stage)``.

The ranking building blocks live in :mod:`ranking.score_ranks` and the sampled protocol's negatives
in :mod:`ranking.eval_negatives`; their public functions are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ranking.data.splits import Split
from ranking.errors import DataError
from ranking.eval_negatives import sample_negatives
from ranking.metrics import (
    average_popularity,
    bootstrap_ci,
    coverage,
    hit_rate,
    mrr,
    ndcg,
    novelty,
)
from ranking.score_ranks import (
    check_scores,
    gather_histories,
    history_mask,
    rank_targets,
    topk_items,
    topk_unchecked,
)

__all__ = [
    "Scorer",
    "evaluate",
    "query_ranks",
    "rank_targets",
    "sample_negatives",
    "history_mask",
    "topk_items",
]


@runtime_checkable
class Scorer(Protocol):
    """Anything that scores the whole catalog for a batch of users."""

    def score(self, histories: list[np.ndarray], users: np.ndarray) -> np.ndarray:
        """Scores ``[B, n_items]`` (float, higher = better) for ``B`` users.

        ``histories[b]`` holds the past items of ``users[b]`` as dense 0-based item ids in time
        order (possibly empty); ``users`` holds the dense user ids.
        """
        ...


def evaluate(
    scorer: Scorer,
    split: Split,
    stage: str = "test",
    ks: Sequence[int] = (10,),
    *,
    filter_seen: bool = True,
    batch_size: int = 1024,
    protocol: str = "full",
    n_negatives: int = 100,
    negative_sampling: str = "uniform",
    seed: int = 0,
    exclude_items: np.ndarray | Sequence[int] | None = None,
    bootstrap: int = 0,
) -> dict[str, float]:
    """Evaluate ``scorer`` on the ``stage`` targets of ``split`` (see the module docstring).

    Parameters
    ----------
    scorer:
        A :class:`Scorer`.
    split, stage:
        Queries are ``split.targets(stage)``; histories come from ``split.history(stage)``.
    ks:
        Cut-offs; every metric is reported for each.
    filter_seen:
        Remove the user's history items (but never the target) from the candidates.
    batch_size:
        Queries scored per call of ``scorer.score``. Does not change the results.
    protocol:
        ``"full"`` (rank among all items) or ``"sampled"`` (rank among ``n_negatives`` sampled
        items plus the target).
    n_negatives, negative_sampling, seed:
        The sampled protocol: how many negatives, drawn ``"uniform"``-ly or by ``"popularity"``
        (proportional to the item counts of ``split.history(stage)``; items never seen there are
        never drawn), and the seed. The negatives of a query depend only on ``seed`` and the
        query's row in ``split.targets(stage)``.
    exclude_items:
        Items that are never candidates (e.g. unavailable items), except as a query's own target.
    bootstrap:
        With ``bootstrap`` > 0 resamples of the queries, also the 95% percentile intervals
        ``"hr@k_ci_low"``, ``"hr@k_ci_high"``, ``"ndcg@k_ci_low"``, ``"ndcg@k_ci_high"``.

    Returns
    -------
    ``{"hr@k", "ndcg@k", "mrr@k", "coverage@k", "novelty@k", "avg_pop@k"}`` for every ``k`` in
    ``ks``, then ``"n_users"`` (distinct users evaluated) and ``"n_targets"`` (queries).
    """
    cutoffs = tuple(int(k) for k in ks)
    if not cutoffs or any(k < 1 for k in cutoffs):
        raise ValueError(f"ks must be one or more positive cut-offs, got {tuple(ks)!r}")
    if protocol not in ("full", "sampled"):
        raise ValueError(f"protocol must be 'full' or 'sampled', got {protocol!r}")
    if negative_sampling not in ("uniform", "popularity"):
        raise ValueError(
            f"negative_sampling must be 'uniform' or 'popularity', got {negative_sampling!r}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    ranks, top, counts, targets = _ranks_and_top(
        scorer,
        split,
        stage,
        kmax=max(cutoffs),
        filter_seen=filter_seen,
        batch_size=batch_size,
        protocol=protocol,
        n_negatives=n_negatives,
        negative_sampling=negative_sampling,
        seed=seed,
        exclude_items=exclude_items,
    )
    n_items = targets.n_items
    n_queries = len(targets)
    result: dict[str, float] = {}
    for k in cutoffs:
        top_k = top[:, :k]
        result[f"hr@{k}"] = hit_rate(ranks, k)
        result[f"ndcg@{k}"] = ndcg(ranks, k)
        result[f"mrr@{k}"] = mrr(ranks, k)
        result[f"coverage@{k}"] = coverage(top_k, n_items)
        result[f"novelty@{k}"] = novelty(top_k, counts)
        result[f"avg_pop@{k}"] = average_popularity(top_k, counts)
        for name, metric in (("hr", hit_rate), ("ndcg", ndcg)) if bootstrap else ():
            low, high = bootstrap_ci(ranks, metric, k, resamples=bootstrap, seed=seed)
            result[f"{name}@{k}_ci_low"], result[f"{name}@{k}_ci_high"] = low, high
    result["n_users"] = float(len(np.unique(targets.user)))
    result["n_targets"] = float(n_queries)
    return result


def _ranks_and_top(
    scorer: Scorer,
    split: Split,
    stage: str,
    *,
    kmax: int,
    filter_seen: bool,
    batch_size: int,
    protocol: str,
    n_negatives: int,
    negative_sampling: str,
    seed: int,
    exclude_items: np.ndarray | Sequence[int] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    """Each query's 0-based rank and top-``kmax`` list, the history item counts and the targets."""
    history = split.history(stage)
    targets = split.targets(stage)
    n_items = targets.n_items
    n_queries = len(targets)
    if n_queries == 0:
        raise DataError(
            f"the {stage!r} stage of this {split.kind} split has no targets to evaluate"
        )
    seqs = history.sequences()
    counts = history.item_counts()

    excluded = np.zeros(n_items, dtype=bool)
    if exclude_items is not None:
        ex = np.asarray(exclude_items, dtype=np.int64).reshape(-1)
        if ex.size and (ex.min() < 0 or ex.max() >= n_items):
            raise ValueError(f"exclude_items must lie in 0..{n_items - 1}")
        excluded[ex] = True
    if protocol == "sampled" and n_negatives < 1:
        raise ValueError(f"n_negatives must be >= 1, got {n_negatives}")
    weights = counts.astype(np.float64) if negative_sampling == "popularity" else None

    ranks = np.empty(n_queries, dtype=np.int64)
    lists: list[np.ndarray] = []
    for start in range(0, n_queries, batch_size):
        rows = np.arange(start, min(start + batch_size, n_queries))
        users = targets.user[rows].astype(np.int64)
        items = targets.item[rows].astype(np.int64)
        b = np.arange(len(rows))

        histories = [seqs.items[seqs.indptr[u] : seqs.indptr[u + 1]] for u in users.tolist()]
        raw = check_scores(scorer.score(histories, users))
        if raw.shape != (len(rows), n_items):
            raise ValueError(
                f"scorer returned scores of shape {raw.shape}, expected ({len(rows)}, {n_items})"
            )

        # Items that are not candidates for each query (never the target itself).
        blocked = np.broadcast_to(excluded, raw.shape).copy()
        if filter_seen:
            h_rows, h_items = gather_histories(seqs, users)
            blocked[h_rows, h_items] = True
        blocked[b, items] = False

        masked = np.where(blocked, -np.inf, raw)
        target_scores = raw[b, items]
        if protocol == "full":
            at_least = (masked >= target_scores[:, None]) & ~blocked
            ranks[rows] = at_least.sum(axis=1) - 1  # minus the target itself
        else:
            allowed = ~blocked
            allowed[b, items] = False
            negs = sample_negatives(allowed, n_negatives, weights=weights, seed=seed, row_ids=rows)
            neg_scores = np.take_along_axis(raw, negs, axis=1)
            ranks[rows] = (neg_scores >= target_scores[:, None]).sum(axis=1)
        lists.append(topk_unchecked(masked, kmax))

    return ranks, np.concatenate(lists, axis=0), counts, targets


def query_ranks(
    scorer: Scorer, split: Split, stage: str = "test", *, filter_seen: bool = True
) -> np.ndarray:
    """Each ``stage`` target's 0-based full-catalog rank (the ranks :func:`evaluate` averages),
    one per query in the order of ``split.targets(stage)``: for paired comparisons of two models
    on the same users."""
    ranks, _, _, _ = _ranks_and_top(
        scorer,
        split,
        stage,
        kmax=1,
        filter_seen=filter_seen,
        batch_size=1024,
        protocol="full",
        n_negatives=100,
        negative_sampling="uniform",
        seed=0,
        exclude_items=None,
    )
    return ranks
