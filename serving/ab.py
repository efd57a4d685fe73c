"""A/B variants: each user is assigned to a variant by a deterministic hash, with configured shares.

The assignment depends only on the salt and the user id, so every replica and every restart puts a
user in the same variant, and changing the salt reshuffles everyone. A variant names the bundle's
re-ranker it serves (``null``: the L2 order without a third stage).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ranking.errors import ConfigError
from ranking.typed_config import check_keys


@dataclass(frozen=True)
class Variant:
    name: str
    share: float
    reranker: str | None = None


class Assigner:
    """Maps a user id to a :class:`Variant` by ``sha256(salt:user)`` against cumulative shares."""

    def __init__(self, variants: Sequence[Mapping[str, Any]], salt: str = "tandem") -> None:
        if not variants:
            raise ConfigError("ab.variants must name at least one variant")
        parsed = []
        for n, spec in enumerate(variants):
            where = f"ab.variants[{n}]"
            if not isinstance(spec, Mapping):
                raise ConfigError(f"{where} must be a mapping {{name, share, reranker}}")
            check_keys(spec, {"name", "share", "reranker"}, where)
            if "name" not in spec or "share" not in spec:
                raise ConfigError(f"{where} needs a name and a share")
            share = float(spec["share"])
            if not 0 < share <= 1:
                raise ConfigError(f"{where}.share must lie in (0, 1], got {share}")
            reranker = spec.get("reranker")
            parsed.append(
                Variant(str(spec["name"]), share, None if reranker is None else str(reranker))
            )
        total = sum(v.share for v in parsed)
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(f"ab.variants shares must sum to 1, got {total:g}")
        if len({v.name for v in parsed}) != len(parsed):
            raise ConfigError("ab.variants names must be unique")
        self.variants = parsed
        self.salt = salt
        self._bounds = []
        acc = 0.0
        for v in parsed:
            acc += v.share
            self._bounds.append(acc)

    def bucket(self, user: str) -> float:
        """A uniform number in [0, 1) fixed by the salt and the user id."""
        digest = hashlib.sha256(f"{self.salt}:{user}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def assign(self, user: str | None) -> Variant:
        """The user's variant (an anonymous request goes to the first variant)."""
        if user is None:
            return self.variants[0]
        u = self.bucket(user)
        for variant, bound in zip(self.variants, self._bounds, strict=True):
            if u < bound:
                return variant
        return self.variants[-1]
