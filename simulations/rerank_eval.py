"""Compare re-rankers on one trained two-tier pipeline: accuracy, beyond-accuracy, rules, latency.

Every re-ranker re-ranks the *same* cached L1 candidates and L2 scores (nothing is trained again),
so a comparison of many re-rankers, or an Optuna study over blend weights, costs seconds.

Metrics, all at K (10), on the held-out users' test targets (leave-one-out, full catalog):

* accuracy: ``ndcg@10``, ``hr@10`` (the one evaluator's protocol: seen items other than the target
  are filtered);
* beyond accuracy, named as RecBole / Elliot name them: ``coverage@10`` (catalog coverage),
  ``ild@10`` (intra-list diversity, 1 - cosine over the CLIP item vectors), ``novelty@10``
  (self-information, bits), ``gini@10`` (Gini index of exposure), ``tail_share@10`` (share of
  long-tail items: outside the 20% most popular), ``calibration_kl@10`` (Steck 2018, KL between the
  user's category mix and the list's);
* ``violations``: the share of lists that break one of the business's hard rules
  (``pipeline.hard_rules``: filters, category caps), whichever re-ranker made them: for
  neural-only, the rate it would have;
* latency: p50 / p99 of the re-rank stage and of the whole request (single requests).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from rich.progress import track

from ranking.data import Catalog, Split
from ranking.errors import ConfigError
from ranking.evaluation import evaluate
from ranking.hybrid import Reranker, build_reranker
from ranking.metrics import (
    calibration_kl,
    coverage,
    gini_index,
    intra_list_diversity,
    long_tail_mask,
    novelty,
    tail_share,
    violation_rate,
)
from ranking.pipeline import TwoTierPipeline, latency_summary
from ranking.rules import RerankContext, build_rule
from ranking.rules.base import HardRule

K = 10


class ListedScores:
    """A Scorer over score rows computed once per held-out user (row ``i`` = ``users[i]``)."""

    def __init__(self, scores: np.ndarray, users: np.ndarray) -> None:
        self.scores = scores
        self.row_of = {int(u): i for i, u in enumerate(users)}

    def score(self, histories: list[np.ndarray], users: np.ndarray) -> np.ndarray:
        return self.scores[[self.row_of[int(u)] for u in users]]


def method_of(reranker: Reranker) -> str:
    """``neural``, ``rules`` or ``hybrid`` (the ``method`` column of results)."""
    if reranker.name == "neural":
        return "neural"
    if reranker.name == "rules":
        return "rules"
    return "hybrid"


def evaluate_rerankers(
    pipeline: TwoTierPipeline,
    specs: Mapping[str, Any],
    heldout: Split,
    catalog: Catalog,
    *,
    item_vectors: np.ndarray | None,
    popularity: np.ndarray,
    hard_rules: Sequence[Mapping[str, Any]] = (),
    latency_requests: int = 200,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One result row per re-ranker spec, and example explanations of the first hybrid.

    ``specs`` maps a display name to a re-ranker spec (``{name, ...}``, e.g. a ``conf/reranker``
    option). Returns ``(rows, examples)``.
    """
    rerankers = {name: build_reranker(spec) for name, spec in specs.items()}
    for reranker in rerankers.values():
        reranker.check(K)
    context = RerankContext.from_catalog(
        catalog, popularity=popularity, item_vectors=item_vectors, k=K
    )
    rules = [build_rule(spec) for spec in hard_rules]
    for rule in rules:
        if not isinstance(rule, HardRule):
            raise ConfigError(
                f"pipeline.hard_rules: {rule.name!r} is not a hard rule (a filter or a cap)"
            )
    histories = heldout.history("test").sequences()
    users = heldout.targets("test").user
    user_histories = [histories[u] for u in users]
    tail = long_tail_mask(popularity)
    n_cat = int(catalog.category.max()) + 1 if catalog.category.size else 0
    # L1 candidates and L2 scores once for every re-ranker: they only re-rank them
    candidates = pipeline.candidates(user_histories)
    l2_scores = pipeline.rank_candidates(user_histories, candidates)
    rows: list[dict[str, Any]] = []
    examples: dict[str, Any] = {}
    for name, reranker in track(
        list(rerankers.items()), description="re-rankers", disable=not progress
    ):
        staged = pipeline.with_reranker(reranker, context)
        lists = staged.final_lists(user_histories, candidates, l2_scores, K)
        accuracy = evaluate(
            ListedScores(staged.list_scores(candidates, l2_scores, lists), users),
            heldout,
            "test",
            ks=(K,),
        )
        requests = [staged.recommend(h, k=K) for h in user_histories[:latency_requests]]
        latency = latency_summary(requests)

        def violates(row: int, items: np.ndarray) -> bool:
            ctx = context.for_request(user_histories[row], K)
            return any(rule.violations(items, ctx) for rule in rules)

        rows.append(
            {
                "reranker": name,
                "method": method_of(reranker),
                "ndcg@10": accuracy["ndcg@10"],
                "hr@10": accuracy["hr@10"],
                "coverage@10": coverage(lists, catalog.n_items),
                "ild@10": intra_list_diversity(lists, item_vectors)
                if item_vectors is not None
                else float("nan"),
                "novelty@10": novelty(lists, popularity),
                "gini@10": gini_index(lists, catalog.n_items),
                "tail_share@10": tail_share(lists, tail),
                "calibration_kl@10": calibration_kl(lists, user_histories, catalog.category, n_cat)
                if n_cat
                else float("nan"),
                "violations": violation_rate(lists, violates) if rules else 0.0,
                "rerank_p99_ms": latency["rerank_p99_ms"],
                "p99_ms": latency["total_p99_ms"],
                "users": accuracy["n_users"],
                # rules that could not act on this dataset (a missing attribute), and why
                "skipped_rules": skipped_rules(requests),
            }
        )
        if not examples and rows[-1]["method"] == "hybrid" and requests:
            first = requests[0]
            assert first.reranked is not None
            examples = {
                "reranker": name,
                "history": user_histories[0][-5:].tolist(),
                "lines": [first.reranked.explain(int(i)) for i in first.items[:5]],
                "skipped": dict(first.reranked.skipped),
            }
    return rows, examples


def skipped_rules(requests: list[Any]) -> str:
    """``"rule: why; ..."`` for the rules a re-ranker skipped on the catalog (missing attributes),
    as the first request saw them ("" when none, or for a re-ranker without rules)."""
    first = next((r.reranked for r in requests if r.reranked is not None), None)
    if first is None:
        return ""
    return "; ".join(f"{rule}: {why}" for rule, why in first.skipped.items())
