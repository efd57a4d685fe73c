"""The synthetic multimodal world: the embedded default dataset, with known ground truth.

Generative story
----------------
* **Items** have attributes (category, colour, pattern, price band) and a Zipf-like popularity.
  Each item's title is made from its attributes, and its image (drawn lazily with PIL) shows the
  same attributes: the pattern in the item's colour on a category-tinted background, framed by a
  border whose width grows with the price band. A fraction of items is introduced late
  (cold-start): they exist in the catalog but cannot be interacted with before ``created_at``.
* **Users** have a long-term taste: one categorical distribution per attribute. At each drift time
  every taste is moved towards a fresh random taste (``drift_strength``), so preferences change.
* **Sessions** carry a short-term intent: a category drawn from the user's current taste. Each event
  of a session stays in the intent's category with probability ``intent_stickiness``; otherwise it
  follows the long-term category taste. Within the chosen category, ``candidates_per_event`` items
  are drawn by popularity, and one of them is picked with probability proportional to the user's
  taste for its colour, pattern and price band (raised to ``taste_sharpness``).

So the next item depends on the live session (category intent) *and* on long-term history
(colour/pattern/price taste): exactly what a long+short sequence model should exploit.
Everything is deterministic given ``seed``.
"""

from __future__ import annotations

import colorsys
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ranking.data.catalog import Catalog
from ranking.data.dataset import Dataset
from ranking.data.interactions import Interactions
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
DAY = 86_400.0


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


@dataclass(frozen=True, eq=False)
class SyntheticWorld:
    """A generated world: the dataset plus the ground truth that produced it.

    ``tastes[attr]`` has shape ``[n_phases, n_users, n_values]``: the users' true preference over
    each attribute's values in each phase (phase ``p`` lasts from ``phase_starts[p]`` until the next
    start). ``session_intent`` gives each session's intended category.
    """

    config: WorldConfig
    dataset: Dataset
    item_codes: dict[str, np.ndarray]
    popularity: np.ndarray
    tastes: dict[str, np.ndarray]
    phase_starts: np.ndarray
    session_intent: np.ndarray
    cold_items: np.ndarray = field(repr=False)

    def phase_at(self, t: float | np.ndarray) -> np.ndarray:
        """Taste phase index in force at time(s) ``t``."""
        return np.searchsorted(self.phase_starts, np.asarray(t), side="right") - 1

    def user_taste(self, user: int, t: float) -> dict[str, np.ndarray]:
        """A user's true taste over every attribute at time ``t``."""
        phase = int(self.phase_at(t))
        return {attr: taste[phase, user] for attr, taste in self.tastes.items()}


class SyntheticImageRenderer:
    """Draws a synthetic item's image from its catalog attributes (picklable, stateless)."""

    def __init__(self, size: int = 32) -> None:
        self.size = size

    def __call__(self, catalog: Catalog, item: int) -> Any:
        attrs = catalog.attributes
        return render_item_image(
            category=int(catalog.category[item]),
            colour=str(attrs["colour"][item]),
            pattern=str(attrs["pattern"][item]),
            price_band=str(attrs["price_band"][item]),
            size=self.size,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SyntheticImageRenderer) and other.size == self.size

    def __hash__(self) -> int:
        return hash(("SyntheticImageRenderer", self.size))


def _category_tint(category: int) -> tuple[int, int, int]:
    hue = (category * 0.618034) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.25, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def render_item_image(
    category: int, colour: str, pattern: str, price_band: str, size: int = 32
) -> Any:
    """An RGB PIL image showing ``pattern`` in ``colour`` on the category's tint."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), _category_tint(category))
    draw = ImageDraw.Draw(img)
    rgb = COLOURS[colour]
    lo, hi = size // 5, size - size // 5
    mid = size // 2
    if pattern == "circle":
        draw.ellipse([lo, lo, hi, hi], fill=rgb)
    elif pattern == "square":
        draw.rectangle([lo, lo, hi, hi], fill=rgb)
    elif pattern == "triangle":
        draw.polygon([(mid, lo), (hi, hi), (lo, hi)], fill=rgb)
    elif pattern == "diamond":
        draw.polygon([(mid, lo), (hi, mid), (mid, hi), (lo, mid)], fill=rgb)
    elif pattern == "cross":
        w = max(2, size // 8)
        draw.rectangle([mid - w, lo, mid + w, hi], fill=rgb)
        draw.rectangle([lo, mid - w, hi, mid + w], fill=rgb)
    elif pattern == "stripes":
        step = max(3, size // 6)
        for x in range(lo, hi, step):
            draw.rectangle([x, lo, x + step // 2, hi], fill=rgb)
    elif pattern == "dots":
        step = max(4, size // 5)
        r = max(1, step // 3)
        for y in range(lo + r, hi, step):
            for x in range(lo + r, hi, step):
                draw.ellipse([x - r, y - r, x + r, y + r], fill=rgb)
    elif pattern == "checks":
        step = max(3, size // 6)
        for y in range(lo, hi, step):
            for x in range(lo, hi, step):
                if ((x - lo) // step + (y - lo) // step) % 2 == 0:
                    draw.rectangle([x, y, x + step - 1, y + step - 1], fill=rgb)
    else:
        raise ConfigError(f"unknown pattern {pattern!r}; expected one of {PATTERNS}")
    border = PRICE_BANDS.index(price_band) * max(1, size // 32)
    if border:
        draw.rectangle([0, 0, size - 1, size - 1], outline=(40, 40, 40), width=border)
    return img


def render_images(catalog: Catalog, items: np.ndarray | None = None) -> np.ndarray:
    """Images of ``items`` (default: all) as a ``uint8 [n, S, S, 3]`` array."""
    items = np.arange(catalog.n_items) if items is None else np.asarray(items)
    return np.stack([np.asarray(catalog.image(int(i))) for i in items])


def _sample_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of ``probs`` ([n, k], rows sum to 1)."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(len(probs))[:, None] * cum[:, -1:]
    return np.minimum((cum < u).sum(axis=1), probs.shape[1] - 1)


def _item_title(category: str, colour: str, pattern: str, price: str) -> str:
    pattern_words = {
        "circle": "with a circle print",
        "square": "with a square print",
        "triangle": "with a triangle print",
        "stripes": "with stripes",
        "dots": "with polka dots",
        "diamond": "with a diamond print",
        "cross": "with a cross print",
        "checks": "with checks",
    }
    return f"{price} {colour} {category} {pattern_words[pattern]}"


def generate_world(config: WorldConfig | None = None, **overrides: Any) -> SyntheticWorld:
    """Generate a synthetic world (deterministic given ``config.seed``)."""
    if config is None:
        config = WorldConfig(**overrides)
    elif overrides:
        config = WorldConfig(**{**asdict(config), **overrides})
    cfg = config
    rng = np.random.default_rng(cfg.seed)
    sizes = cfg.attribute_sizes
    horizon = cfg.horizon_days * DAY

    # ---- items -----------------------------------------------------------------------------
    codes = {attr: rng.integers(0, k, size=cfg.n_items) for attr, k in sizes.items()}
    popularity = 1.0 / np.power(rng.permutation(cfg.n_items) + 1.0, cfg.zipf_exponent)
    created_at = np.zeros(cfg.n_items)
    n_cold = int(round(cfg.cold_start_fraction * cfg.n_items))
    cold_items = (
        np.sort(rng.choice(cfg.n_items, size=n_cold, replace=False))
        if n_cold
        else np.array([], int)
    )
    created_at[cold_items] = rng.uniform(cfg.cold_start_after * horizon, horizon, size=n_cold)
    names = {attr: np.asarray(ATTRIBUTE_VALUES[attr])[codes[attr]] for attr in sizes}
    titles = [
        _item_title(c, col, p, pr)
        for c, col, p, pr in zip(
            names["category"], names["colour"], names["pattern"], names["price_band"], strict=True
        )
    ]
    catalog = Catalog(
        ids=np.char.add("item", np.arange(cfg.n_items).astype(str)),
        text=np.asarray(titles),
        category=codes["category"],
        category_names=CATEGORIES[: cfg.n_categories],
        attributes={
            "colour": names["colour"],
            "pattern": names["pattern"],
            "price_band": names["price_band"],
            "popularity": popularity.astype(np.float32),
        },
        created_at=created_at,
        image_renderer=SyntheticImageRenderer(cfg.image_size),
    )

    # ---- user tastes, one set per drift phase ----------------------------------------------
    phase_starts = np.concatenate([[0.0], np.asarray(cfg.drift_times) * horizon])
    tastes: dict[str, np.ndarray] = {}
    for attr, k in sizes.items():
        phases = [rng.dirichlet(np.full(k, cfg.taste_concentration), size=cfg.n_users)]
        for _ in cfg.drift_times:
            fresh = rng.dirichlet(np.full(k, cfg.taste_concentration), size=cfg.n_users)
            phases.append((1 - cfg.drift_strength) * phases[-1] + cfg.drift_strength * fresh)
        tastes[attr] = np.stack(phases)

    # ---- sessions ----------------------------------------------------------------------------
    n_sessions = 1 + rng.poisson(cfg.sessions_per_user - 1, size=cfg.n_users)
    session_user = np.repeat(np.arange(cfg.n_users), n_sessions)
    session_start = rng.uniform(0, horizon, size=len(session_user))
    order = np.lexsort((session_start, session_user))
    session_user, session_start = session_user[order], session_start[order]
    session_phase = np.searchsorted(phase_starts, session_start, side="right") - 1
    session_intent = _sample_rows(rng, tastes["category"][session_phase, session_user])
    session_len = rng.geometric(1.0 / cfg.session_length, size=len(session_user))

    # ---- events --------------------------------------------------------------------------------
    ev_session = np.repeat(np.arange(len(session_user)), session_len)
    ev_user = session_user[ev_session]
    gaps = rng.exponential(120.0, size=len(ev_session))
    first = np.concatenate([[0], np.cumsum(session_len)[:-1]])
    within = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[first] - gaps[first], session_len)
    ev_time = session_start[ev_session] + within
    ev_phase = np.searchsorted(phase_starts, ev_time, side="right") - 1
    sticky = rng.random(len(ev_session)) < cfg.intent_stickiness
    drifting_category = _sample_rows(rng, tastes["category"][ev_phase, ev_user])
    ev_category = np.where(sticky, session_intent[ev_session], drifting_category)
    ev_item = _pick_items(
        rng, cfg, ev_category, ev_user, ev_phase, ev_time, codes, popularity, created_at, tastes
    )
    keep = ev_item >= 0
    ev_event = rng.choice(len(EVENT_TYPES), size=len(ev_session), p=EVENT_PROBS)

    interactions = Interactions(
        user=ev_user[keep],
        item=ev_item[keep],
        timestamp=ev_time[keep],
        user_ids=np.char.add("user", np.arange(cfg.n_users).astype(str)),
        n_items=cfg.n_items,
        session=ev_session[keep],
        event=ev_event[keep],
        event_names=EVENT_TYPES,
    )
    dataset = Dataset(name="synthetic", catalog=catalog, interactions=interactions)
    return SyntheticWorld(
        config=cfg,
        dataset=dataset,
        item_codes=codes,
        popularity=popularity,
        tastes=tastes,
        phase_starts=phase_starts,
        session_intent=session_intent,
        cold_items=cold_items,
    )


def _pick_items(
    rng: np.random.Generator,
    cfg: WorldConfig,
    ev_category: np.ndarray,
    ev_user: np.ndarray,
    ev_phase: np.ndarray,
    ev_time: np.ndarray,
    codes: dict[str, np.ndarray],
    popularity: np.ndarray,
    created_at: np.ndarray,
    tastes: dict[str, np.ndarray],
    chunk: int = 65_536,
) -> np.ndarray:
    """For each event, draw candidates of its category by popularity, then pick one by taste.

    Candidates that do not exist yet at the event's time are excluded. Returns ``-1`` for an
    event whose category has no item available at that time (such events are dropped).
    """
    by_category = np.argsort(codes["category"], kind="stable")
    cat_sorted = codes["category"][by_category]
    starts = np.searchsorted(cat_sorted, np.arange(cfg.n_categories), side="left")
    ends = np.searchsorted(cat_sorted, np.arange(cfg.n_categories), side="right")
    cum = np.concatenate([[0.0], np.cumsum(popularity[by_category])])
    m = cfg.candidates_per_event
    out = np.full(len(ev_category), -1, dtype=np.int64)
    for lo in range(0, len(ev_category), chunk):
        sl = slice(lo, lo + chunk)
        cat, user, phase, t = ev_category[sl], ev_user[sl], ev_phase[sl], ev_time[sl]
        a, b = starts[cat], ends[cat]
        nonempty = b > a
        u = rng.random((len(cat), m))
        target = cum[a][:, None] + u * (cum[b] - cum[a])[:, None]
        pos = np.clip(
            np.searchsorted(cum, target, side="right") - 1,
            a[:, None],
            np.maximum(a, b - 1)[:, None],
        )
        cand = by_category[pos]
        logit = cfg.taste_sharpness * (
            np.log(
                tastes["colour"][phase, user][np.arange(len(cat))[:, None], codes["colour"][cand]]
                + 1e-9
            )
            + np.log(
                tastes["pattern"][phase, user][np.arange(len(cat))[:, None], codes["pattern"][cand]]
                + 1e-9
            )
            + np.log(
                tastes["price_band"][phase, user][
                    np.arange(len(cat))[:, None], codes["price_band"][cand]
                ]
                + 1e-9
            )
        )
        exists = created_at[cand] <= t[:, None]
        logit = np.where(exists, logit, -np.inf)
        gumbel = -np.log(-np.log(rng.random(logit.shape)))
        choice = np.argmax(logit + gumbel, axis=1)
        ok = nonempty & exists.any(axis=1)
        out[sl] = np.where(ok, cand[np.arange(len(cat)), choice], -1)
    return out


def synthetic_dataset(**config: Any) -> Dataset:
    """Hydra-friendly entry point: the world's :class:`Dataset` for the given settings."""
    return generate_world(WorldConfig(**_as_config_kwargs(config))).dataset


def _as_config_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    known = set(WorldConfig.__dataclass_fields__)
    unknown = sorted(set(config) - known)
    if unknown:
        raise ConfigError(
            f"synthetic world: unknown setting(s) {unknown}; known settings are {sorted(known)}"
        )
    out = dict(config)
    if "drift_times" in out:
        out["drift_times"] = tuple(out["drift_times"])
    return out
