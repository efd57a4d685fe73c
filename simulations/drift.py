"""Drift detection on a live stream: prequential HR@10 and a data-drift statistic.

* **Prequential HR@10** (test-then-train): before an event is ingested, the service is asked for
  the user's top 10; the event is a hit when its item is among them. The monitor keeps the last
  ``window`` outcomes and compares their mean with the reference level measured over the first
  full window after the model went live.
* **Data drift**: the Jensen-Shannon divergence (base 2, in [0, 1]) between the category mix of
  the last ``window`` events and that of the data the live model was trained on.

Either crossing its threshold triggers retraining, at most once per ``window`` events.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ranking.errors import ConfigError


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence of two count or probability vectors (base 2: 0 .. 1)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape or p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("js_divergence needs two non-empty vectors of one shape")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return 0.5 * kl(p) + 0.5 * kl(q)


@dataclass
class DriftState:
    events: int
    hr: float
    reference_hr: float | None
    divergence: float
    trigger: str | None


class DriftMonitor:
    """Sliding-window HR@10 against its reference, and JS divergence of categories vs training."""

    def __init__(
        self,
        n_categories: int,
        *,
        window: int = 1000,
        hr_drop: float = 0.2,
        divergence_threshold: float = 0.1,
    ) -> None:
        if window < 10:
            raise ConfigError(f"stream.window must be at least 10 events, got {window}")
        if not 0 < hr_drop < 1:
            raise ConfigError(f"stream.hr_drop must lie in (0, 1), got {hr_drop}")
        if not 0 < divergence_threshold <= 1:
            raise ConfigError(
                f"stream.divergence_threshold must lie in (0, 1], got {divergence_threshold}"
            )
        self.window = window
        self.hr_drop = hr_drop
        self.divergence_threshold = divergence_threshold
        self.n_categories = n_categories
        self.reset(np.ones(n_categories))

    def reset(self, training_categories: np.ndarray) -> None:
        """A new model went live, trained on data with this category mix (counts)."""
        self.training = np.asarray(training_categories, dtype=np.float64) + 1.0  # smoothed
        self.hits: deque[bool] = deque(maxlen=self.window)
        self.categories: deque[int] = deque(maxlen=self.window)
        self.reference: float | None = None
        self.since_reset = 0

    def update(self, hit: bool, category: int) -> DriftState:
        """Record one event's outcome; returns the state, with ``trigger`` set when drift is seen."""
        self.hits.append(bool(hit))
        self.categories.append(int(category))
        self.since_reset += 1
        full = len(self.hits) == self.window
        hr = float(np.mean(self.hits))
        if full and self.reference is None:
            self.reference = hr
        counts = np.bincount(
            [c for c in self.categories if c >= 0], minlength=self.n_categories
        ).astype(np.float64)
        divergence = js_divergence(counts + 1.0, self.training) if full else 0.0
        trigger = None
        if full and self.since_reset >= 2 * self.window:
            if self.reference is not None and hr < (1 - self.hr_drop) * self.reference:
                trigger = (
                    f"HR@10 {hr:.3f} < {1 - self.hr_drop:.2f} x reference {self.reference:.3f}"
                )
            elif divergence > self.divergence_threshold:
                trigger = f"category JS divergence {divergence:.3f} > {self.divergence_threshold}"
        return DriftState(self.since_reset, hr, self.reference, divergence, trigger)
