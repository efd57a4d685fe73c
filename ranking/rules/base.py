"""What every re-ranking rule shares: the request context, the rule base classes and checks.

A rule is a small object built from plain keyword arguments (so Hydra's ``_target_`` and the
:data:`ranking.rules.RULES` registry build it the same way). Its ``kind`` says where it acts in a
re-ranker (see :mod:`ranking.hybrid`):

``filter``
    removes candidates (:class:`Filter`);
``boost``
    gives every candidate a value in ``[0, 1]`` that a re-ranker adds with a weight
    (:class:`Boost`);
``cap``, ``pin``, ``diversifier``
    shape the greedy top-K selection (:mod:`ranking.rules.selection`,
    :mod:`ranking.rules.diversity`).

A rule that needs data the catalog lacks (no availability flags, no creation times, no attribute of
that name, no item vectors) does not raise: :meth:`Rule.skip_reason` returns a reason, the re-ranker
leaves the rule out and the result lists it under ``skipped``. Settings a user got wrong raise
:class:`ranking.errors.ConfigError` naming the rule and the key.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np

from ranking.errors import ConfigError

__all__ = ["Boost", "Filter", "HardRule", "RerankContext", "Rule", "Trace", "plain"]


@dataclass(frozen=True, eq=False)
class RerankContext:
    """The catalog arrays the rules read, plus the request they re-rank for.

    Build one per catalog with :meth:`from_catalog` and derive one per request with
    :meth:`for_request` (cheap: the arrays are shared, not copied).

    Attributes
    ----------
    n_items:
        Number of items in the catalog (``None``: unknown).
    category:
        ``int32 [n_items]`` category code per item, ``-1`` when unknown (``None``: no categories).
    n_categories:
        Number of category codes.
    category_names:
        Names of the codes (used in explanations; may be empty).
    available:
        ``bool [n_items]``, whether an item may be recommended now (``None``: unknown).
    created_at:
        ``float64 [n_items]`` creation times (``None``: unknown).
    attributes:
        Further per-item columns by name (numeric or string arrays).
    popularity:
        ``[n_items]`` interaction counts of every item (``None``: unknown).
    item_vectors:
        ``float32 [n_items, d]`` L2-normalised content vectors, e.g. CLIP (``None``: none).
    history:
        ``int64`` ids of the items of the user's session/history, oldest first.
    k:
        Length of the list to return.
    now:
        Request time, same unit as ``created_at`` (``None``: the newest ``created_at``).
    """

    n_items: int | None = None
    category: np.ndarray | None = None
    n_categories: int = 0
    category_names: tuple[str, ...] = ()
    available: np.ndarray | None = None
    created_at: np.ndarray | None = None
    attributes: Mapping[str, np.ndarray] = field(default_factory=dict)
    popularity: np.ndarray | None = None
    item_vectors: np.ndarray | None = None
    history: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    k: int = 10
    now: float | None = None
    cache: dict[str, Any] = field(default_factory=dict, repr=False)
    """Per-catalog values rules compute once (shared by every :meth:`for_request` copy)."""

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int | np.integer) or self.k < 1:
            raise ConfigError(f"k must be a positive integer, got {self.k!r}")

    @classmethod
    def from_catalog(
        cls,
        catalog: Any,
        *,
        popularity: np.ndarray | None = None,
        item_vectors: np.ndarray | None = None,
        k: int = 10,
    ) -> RerankContext:
        """A context over a :class:`ranking.data.Catalog`.

        A :class:`~ranking.data.Catalog` fills ``created_at`` with zeros and ``available`` with
        ``True`` when its source has none; a column with one value for every item carries no
        freshness, and one that marks every item available excludes nothing, so each is taken as
        missing (``None``) and the rules that need it are skipped and reported. A catalog whose
        items all have category ``-1`` has no categories.
        """
        created = np.asarray(catalog.created_at, dtype=np.float64)
        if created.size == 0 or created.min() == created.max():
            created = None
        available = None if catalog.available is None else np.asarray(catalog.available, bool)
        if available is not None and available.all():
            available = None
        category = np.asarray(catalog.category, dtype=np.int32)
        n_categories = len(catalog.category_names)
        if category.size == 0 or category.max() < 0:
            category, n_categories = None, 0
        vectors = None if item_vectors is None else np.asarray(item_vectors, dtype=np.float32)
        if vectors is not None and (vectors.ndim != 2 or len(vectors) != catalog.n_items):
            raise ConfigError(
                f"item_vectors must have shape [n_items={catalog.n_items}, d], got {vectors.shape}"
            )
        counts = None if popularity is None else np.asarray(popularity, dtype=np.float64)
        if counts is not None and counts.shape != (catalog.n_items,):
            raise ConfigError(
                f"popularity must hold one count per item ({catalog.n_items}), got {counts.shape}"
            )
        return cls(
            n_items=catalog.n_items,
            category=category,
            n_categories=n_categories,
            category_names=tuple(catalog.category_names),
            available=available,
            created_at=created,
            attributes=dict(catalog.attributes),
            popularity=counts,
            item_vectors=vectors,
            k=k,
        )

    def for_request(
        self, history: np.ndarray | None = None, k: int | None = None, now: float | None = None
    ) -> RerankContext:
        """This context for one request (the catalog arrays and the cache are shared)."""
        hist = np.empty(0, np.int64) if history is None else np.asarray(history, dtype=np.int64)
        return replace(self, history=hist, k=self.k if k is None else k, now=now)

    def category_name(self, code: int) -> str:
        """The name of a category code (``"?"`` when unknown)."""
        if 0 <= code < len(self.category_names):
            return self.category_names[code]
        return "?" if code < 0 else str(code)


def plain(value: Any) -> Any:
    """``value`` with mappings made dicts and lists made lists (e.g. OmegaConf containers)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [plain(v) for v in value]
    return value


class Rule:
    """Base class of every rule.

    Subclasses set ``name`` (the registry name) and ``kind``, store each ``__init__`` argument
    under the same attribute name (so :meth:`spec` can rebuild the rule) and may override
    :meth:`skip_reason`.
    """

    name: ClassVar[str] = "rule"
    kind: ClassVar[str] = "rule"

    def __init__(self) -> None:
        pass

    @property
    def label(self) -> str:
        """How results and explanations name this rule."""
        return self.name

    def skip_reason(self, context: RerankContext) -> str | None:
        """Why this rule cannot act on ``context`` (missing data), or ``None`` if it can."""
        return None

    def spec(self) -> dict[str, Any]:
        """``{"name": ..., **settings}``, the mapping :func:`ranking.rules.build_rule` takes."""
        out: dict[str, Any] = {"name": self.name}
        for param in list(inspect.signature(type(self).__init__).parameters.values())[1:]:
            value = getattr(self, param.name)
            out[param.name] = value.tolist() if isinstance(value, np.ndarray) else value
        return out

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.spec().items() if k != "name")
        return f"{type(self).__name__}({settings})"

    # ---- validation helpers (messages name the rule and the key) ----------------------------

    def _error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"rule {self.name!r}: {key} {message}")

    def _number(
        self,
        key: str,
        value: Any,
        *,
        low: float | None = None,
        high: float | None = None,
        low_open: bool = False,
    ) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise self._error(key, f"must be a number, got {value!r}")
        out = float(value)
        if not math.isfinite(out):
            raise self._error(key, f"must be finite, got {value!r}")
        if low is not None and (out <= low if low_open else out < low):
            bound = f"> {low:g}" if low_open else f">= {low:g}"
            raise self._error(key, f"must be {bound}, got {value!r}")
        if high is not None and out > high:
            raise self._error(key, f"must be <= {high:g}, got {value!r}")
        return out

    def _unit(self, key: str, value: Any) -> float:
        out = self._number(key, value)
        if not 0.0 <= out <= 1.0:
            raise self._error(key, f"must lie in [0, 1], got {value!r}")
        return out

    def _integer(self, key: str, value: Any, *, low: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise self._error(key, f"must be an integer >= {low}, got {value!r}")
        return int(value)


class HardRule(Rule):
    """A rule a list can break (filters and caps); :meth:`violations` measures neural-only lists."""

    def violations(self, items: np.ndarray, context: RerankContext) -> bool:
        """Whether the list ``items`` (``-1`` = empty slot) breaks this rule for ``context``."""
        raise NotImplementedError


class Filter(HardRule):
    """Removes candidates: :meth:`keep` says which stay."""

    kind: ClassVar[str] = "filter"

    def keep(self, items: np.ndarray, context: RerankContext) -> np.ndarray:
        """``bool [n]``: ``True`` for the items of ``items`` (all ``>= 0``) this filter keeps."""
        raise NotImplementedError

    def reason(self, item: int, context: RerankContext) -> str:
        """Why ``item`` was removed (shown in explanations)."""
        return "removed"

    def violations(self, items: np.ndarray, context: RerankContext) -> bool:
        items = np.asarray(items, dtype=np.int64)
        items = items[items >= 0]
        if items.size == 0 or self.skip_reason(context) is not None:
            return False
        return not bool(self.keep(items, context).all())


class Boost(Rule):
    """Gives every candidate a value in ``[0, 1]``, added to the score with ``weight``.

    Parameters
    ----------
    weight:
        Weight of the boost in the re-ranker's sum (a :class:`ranking.hybrid.WeightedBlend`
        ``weights`` entry under this boost's label takes precedence).
    label:
        Name of the boost in weights and explanations (default: the rule name).
    """

    kind: ClassVar[str] = "boost"

    def __init__(self, weight: float = 1.0, label: str | None = None) -> None:
        self.weight = self._number("weight", weight)
        if label is not None and (not isinstance(label, str) or not label):
            raise self._error("label", f"must be a non-empty string, got {label!r}")
        self._label = label

    @property
    def label(self) -> str:
        return self._label or self.name

    def spec(self) -> dict[str, Any]:
        out = super().spec()
        out["label"] = self._label
        return out

    def values(self, items: np.ndarray, context: RerankContext) -> np.ndarray:
        """``float64 [n]`` in ``[0, 1]`` for the items of ``items`` (all ``>= 0``)."""
        raise NotImplementedError

    def describe(self, value: float) -> str:
        """A short reading of one value (explanations)."""
        return f"{value:.2f}"


@dataclass
class Trace:
    """What the rules did to one request (filled while re-ranking, read by explanations).

    Attributes
    ----------
    removed:
        ``item -> (rule label, reason)`` for every candidate a filter or a cap took out.
    notes:
        ``item -> [note, ...]``: what selection rules (pins, diversifiers) did to a listed item.
        A note is a dict with at least ``rule`` and ``action``.
    skipped:
        ``rule label -> reason`` for every rule that could not act on this request.
    """

    removed: dict[int, tuple[str, str]] = field(default_factory=dict)
    notes: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def note(self, item: int, rule: str, action: str, **details: Any) -> None:
        self.notes.setdefault(int(item), []).append({"rule": rule, "action": action, **details})
