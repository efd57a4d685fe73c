"""The synthetic world's vocabulary and settings.

The attribute values and event types, :class:`WorldConfig`, and the check of the settings that a
dataset config passes to ``simulations.datasets.synthetic.synthetic_dataset``.

The generator itself lives in :mod:`simulations.datasets.synthetic`; item images in
:mod:`simulations.datasets.synthetic_images`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ranking.errors import ConfigError

CATEGORIES = (
    "shirt",
    "mug",
    "lamp",
    "chair",
    "bag",
    "shoe",
    "clock",
    "vase",
    "hat",
    "book",
    "plate",
    "poster",
    "sofa",
    "watch",
    "rug",
    "kite",
    "bottle",
    "pillow",
    "jacket",
    "teapot",
)
COLOURS = {
    "red": (220, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 30),
    "green": (40, 160, 60),
    "teal": (20, 150, 150),
    "blue": (40, 80, 220),
    "purple": (130, 50, 180),
    "pink": (240, 120, 180),
    "brown": (120, 75, 30),
    "black": (20, 20, 20),
    "white": (250, 250, 250),
    "grey": (128, 128, 128),
}
PATTERNS = ("circle", "square", "triangle", "stripes", "dots", "diamond", "cross", "checks")
PRICE_BANDS = ("budget", "standard", "premium", "luxury")
EVENT_TYPES = ("view", "click", "cart", "purchase")
EVENT_PROBS = (0.55, 0.3, 0.1, 0.05)
ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "category": CATEGORIES,
    "colour": tuple(COLOURS),
    "pattern": PATTERNS,
    "price_band": PRICE_BANDS,
}

__all__ = [
    "ATTRIBUTE_VALUES",
    "CATEGORIES",
    "COLOURS",
    "EVENT_PROBS",
    "EVENT_TYPES",
    "PATTERNS",
    "PRICE_BANDS",
    "WorldConfig",
    "world_config_from_settings",
]


@dataclass(frozen=True)
class WorldConfig:
    """Size and behaviour of a synthetic world. Defaults finish a whole simulation in minutes."""

    n_items: int = 2000
    n_users: int = 1000
    n_categories: int = 12
    n_colours: int = 8
    n_patterns: int = 6
    zipf_exponent: float = 1.0
    sessions_per_user: float = 5.0
    session_length: float = 6.0
    intent_stickiness: float = 0.85
    taste_concentration: float = 0.3
    candidates_per_event: int = 24
    taste_sharpness: float = 2.0
    horizon_days: float = 90.0
    drift_times: tuple[float, ...] = (0.6,)
    drift_strength: float = 0.6
    cold_start_fraction: float = 0.05
    cold_start_after: float = 0.75
    image_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.n_items >= 1, "n_items must be >= 1"),
            (self.n_users >= 1, "n_users must be >= 1"),
            (
                1 <= self.n_categories <= len(CATEGORIES),
                f"n_categories must lie in 1..{len(CATEGORIES)}",
            ),
            (1 <= self.n_colours <= len(COLOURS), f"n_colours must lie in 1..{len(COLOURS)}"),
            (1 <= self.n_patterns <= len(PATTERNS), f"n_patterns must lie in 1..{len(PATTERNS)}"),
            (self.sessions_per_user >= 1, "sessions_per_user must be >= 1"),
            (self.session_length >= 1, "session_length must be >= 1"),
            (0 <= self.intent_stickiness <= 1, "intent_stickiness must lie in [0, 1]"),
            (self.taste_concentration > 0, "taste_concentration must be > 0"),
            (self.candidates_per_event >= 1, "candidates_per_event must be >= 1"),
            (self.taste_sharpness >= 0, "taste_sharpness must be >= 0"),
            (self.horizon_days > 0, "horizon_days must be > 0"),
            (
                all(0 < t < 1 for t in self.drift_times),
                "drift_times are fractions of the horizon in (0, 1)",
            ),
            (0 <= self.drift_strength <= 1, "drift_strength must lie in [0, 1]"),
            (0 <= self.cold_start_fraction < 1, "cold_start_fraction must lie in [0, 1)"),
            (0 < self.cold_start_after < 1, "cold_start_after must lie in (0, 1)"),
            (self.image_size >= 8, "image_size must be >= 8"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"synthetic world: {message}")
        object.__setattr__(self, "drift_times", tuple(sorted(float(t) for t in self.drift_times)))

    @property
    def attribute_sizes(self) -> dict[str, int]:
        return {
            "category": self.n_categories,
            "colour": self.n_colours,
            "pattern": self.n_patterns,
            "price_band": len(PRICE_BANDS),
        }


def world_config_from_settings(settings: Mapping[str, Any]) -> WorldConfig:
    """The :class:`WorldConfig` of a dataset config's settings (``drift_times`` may be a list).

    Raises :class:`ConfigError` naming every unknown setting.
    """
    known = set(WorldConfig.__dataclass_fields__)
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(
            f"synthetic world: unknown setting(s) {unknown}; known settings are {sorted(known)}"
        )
    kwargs = dict(settings)
    if "drift_times" in kwargs:
        kwargs["drift_times"] = tuple(kwargs["drift_times"])
    return WorldConfig(**kwargs)
