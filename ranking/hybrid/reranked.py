"""The answer of a re-ranker for one request, with an explanation of every item.

:class:`Reranked` holds the top-K arrays a caller needs (items, final scores, L1 ranks, L2 scores)
and, for explanations, the per-candidate table the re-ranker worked on. Explanations are built
only when asked for, so they cost nothing on the serving path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

__all__ = ["CandidateTable", "Reranked"]


@dataclass(frozen=True, eq=False)
class CandidateTable:
    """Everything a re-ranker knew about the candidates of one request (``n`` rows).

    Attributes
    ----------
    items, l1_ranks, l2_scores:
        The candidates as given (``-1`` padding included), their L1 ranks and L2 scores
        (``nan`` where there are none).
    scores:
        ``float64 [n]`` the final score of each candidate that survived the filters (``nan`` else).
    score_rank:
        ``int64 [n]`` each survivor's place in the score order (``-1`` else).
    components:
        ``label -> (weight, float64 [n] values)``: the parts of the score (``l2`` and each boost).
    removed:
        ``item -> (rule label, reason)`` for candidates taken out by a filter or a cap.
    notes:
        ``item -> [note, ...]``: what pins and diversifiers did to listed items.
    excluded:
        Why candidates that were never scored (outside a cascade's shortlist) were left out.
    """

    items: np.ndarray
    l1_ranks: np.ndarray
    l2_scores: np.ndarray
    scores: np.ndarray
    score_rank: np.ndarray
    components: dict[str, tuple[float, np.ndarray]] = field(default_factory=dict)
    removed: dict[int, tuple[str, str]] = field(default_factory=dict)
    notes: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    excluded: str = ""

    def row(self, item: int) -> int:
        """Index of ``item`` among the candidates, ``-1`` when it is not one."""
        found = np.flatnonzero(self.items == item)
        return int(found[0]) if found.size else -1


def _num(value: float, digits: int = 3) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


@dataclass(frozen=True, eq=False)
class Reranked:
    """One request's top-K, best first, and how each item got there.

    Attributes
    ----------
    items:
        ``int64 [m]`` the listed item ids, ``m <= k`` (fewer when too few candidates survive).
    scores:
        ``float32 [m]`` each item's final score in the re-ranker (``nan`` for a pinned item that
        was not a candidate).
    l1_ranks:
        ``int64 [m]`` each item's rank among the L1 candidates (``-1``: not a candidate).
    l2_scores:
        ``float32 [m]`` each item's L2 score (``nan``: none).
    k:
        The requested list length.
    reranker:
        Name of the re-ranker that produced the list.
    skipped:
        ``rule label -> reason`` for every rule that could not act on this request.
    table:
        The per-candidate working table (explanations read it).
    """

    items: np.ndarray
    scores: np.ndarray
    l1_ranks: np.ndarray
    l2_scores: np.ndarray
    k: int
    reranker: str
    skipped: dict[str, str]
    table: CandidateTable = field(repr=False)

    @property
    def removed(self) -> dict[int, tuple[str, str]]:
        """``item -> (rule label, reason)`` for every candidate a filter or a cap took out."""
        return self.table.removed

    def padded(self) -> np.ndarray:
        """``int64 [k]``: the items, padded with ``-1`` (the layout of the ``ranking.metrics``)."""
        out = np.full(self.k, -1, dtype=np.int64)
        out[: len(self.items)] = self.items
        return out

    # ---- machine-readable ------------------------------------------------------------------

    def _components(self, row: int) -> dict[str, dict[str, float | None]]:
        out = {}
        for label, (weight, values) in self.table.components.items():
            value = values[row] if row >= 0 else float("nan")
            out[label] = {
                "value": _num(value),
                "weight": _num(weight),
                "contribution": _num(weight * value),
            }
        return out

    @cached_property
    def explanations(self) -> list[dict[str, Any]]:
        """One dict per listed item: ``item, position, l1_rank, l2_score, score, score_rank,
        components`` (``label -> value, weight, contribution``) and ``rules`` (every rule that
        acted on the item: boosts with their contribution, pins, diversifiers)."""
        out = []
        for position, item in enumerate(self.items.tolist()):
            row = self.table.row(item)
            components = self._components(row)
            rules: list[dict[str, Any]] = [
                {"rule": label, "action": "boost", **parts}
                for label, parts in components.items()
                if label != "l2"
            ]
            rules += self.table.notes.get(item, [])
            out.append(
                {
                    "item": item,
                    "position": position,
                    "l1_rank": int(self.l1_ranks[position]),
                    "l2_score": _num(self.l2_scores[position]),
                    "score": _num(self.scores[position]),
                    "score_rank": int(self.table.score_rank[row]) if row >= 0 else -1,
                    "components": components,
                    "rules": rules,
                }
            )
        return out

    @cached_property
    def removals(self) -> list[dict[str, Any]]:
        """One dict per candidate a rule took out: ``item, rule, reason, l1_rank, l2_score``."""
        out = []
        for item, (rule, reason) in self.table.removed.items():
            row = self.table.row(item)
            out.append(
                {
                    "item": item,
                    "rule": rule,
                    "reason": reason,
                    "l1_rank": int(self.table.l1_ranks[row]) if row >= 0 else -1,
                    "l2_score": _num(self.table.l2_scores[row]) if row >= 0 else None,
                }
            )
        return out

    def report(self) -> dict[str, Any]:
        """Everything about this request as plain data (JSON-serialisable)."""
        return {
            "reranker": self.reranker,
            "k": self.k,
            "items": self.items.tolist(),
            "explanations": self.explanations,
            "removed": self.removals,
            "skipped": dict(self.skipped),
        }

    # ---- human-readable --------------------------------------------------------------------

    def explain(self, item: int) -> str:
        """A one-line account of what happened to ``item`` in this request."""
        item = int(item)
        listed = np.flatnonzero(self.items == item)
        if listed.size:
            return self._explain_listed(self.explanations[int(listed[0])])
        table = self.table
        row = table.row(item)
        if item in table.removed:
            rule, reason = table.removed[item]
            where = f"; L1 rank {int(table.l1_ranks[row])}" if row >= 0 else ""
            return f"item {item}: removed by {rule} ({reason}){where}"
        if row < 0 or table.items[row] < 0:
            pins = [label for label, why in self.skipped.items() if f"item {item} " in why]
            extra = f"; {pins[0]} skipped: {self.skipped[pins[0]]}" if pins else ""
            return f"item {item}: not among the candidates{extra}"
        if table.score_rank[row] < 0:
            why = table.excluded or "not scored"
            return f"item {item}: L1 rank {int(table.l1_ranks[row])}, {why}"
        rank = int(table.score_rank[row])
        survivors = int((table.score_rank >= 0).sum())
        text = (
            f"item {item}: not listed; score {_fmt(_num(table.scores[row]))} "
            f"score rank {rank} of {survivors} after the filters (k={self.k})"
        )
        if rank < self.k:
            movers = sorted({n["rule"] for notes in table.notes.values() for n in notes})
            movers += sorted({rule for rule, _ in table.removed.values()} & {"category_cap"})
            text += f"; pushed out by {', '.join(movers) or 'the selection rules'}"
        return text

    @staticmethod
    def _explain_listed(e: dict[str, Any]) -> str:
        parts = [f"L1 rank {e['l1_rank']}" if e["l1_rank"] >= 0 else "not an L1 candidate"]
        if e["l2_score"] is not None:
            parts.append(f"L2 {e['l2_score']:.3g}")
        score = f"score {_fmt(e['score'])}"
        terms = [
            f"{label} {_fmt(c['value'])}"
            if c["weight"] == 1
            else f"{label} {_fmt(c['contribution'])} ({_fmt(c['value'])}x{_fmt(c['weight'])})"
            for label, c in e["components"].items()
            if c["value"] is not None
        ]
        if terms:
            score += " = " + " + ".join(terms)
        parts.append(score)
        if e["score_rank"] >= 0 and e["score_rank"] != e["position"]:
            parts.append(f"score rank {e['score_rank']}")
        for note in e["rules"]:
            if note["action"] == "pinned":
                parts.append(f"{note['rule']}: pinned at position {note['position']}")
            elif note["action"] == "reordered":
                numbers = ", ".join(
                    f"{k.replace('_', ' ')} {v:.3g}"
                    for k, v in note.items()
                    if k not in ("rule", "action", "over") and isinstance(v, float)
                )
                parts.append(f"{note['rule']}: chosen over item {note['over']} ({numbers})")
        return f"#{e['position']} item {e['item']}: " + "; ".join(parts)
