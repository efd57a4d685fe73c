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

The settings and attribute vocabularies live in :mod:`simulations.datasets.synthetic_config`, the
item images in :mod:`simulations.datasets.synthetic_images`; both are re-exported here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ranking.data.catalog import Catalog
from ranking.data.dataset import Dataset
from ranking.data.interactions import Interactions
from simulations.datasets.synthetic_config import (
    ATTRIBUTE_VALUES,
    CATEGORIES,
    COLOURS,
    EVENT_PROBS,
    EVENT_TYPES,
    PATTERNS,
    PRICE_BANDS,
    WorldConfig,
    world_config_from_settings,
)
from simulations.datasets.synthetic_images import (
    SyntheticImageRenderer,
    render_images,
    render_item_image,
)

__all__ = [
    "ATTRIBUTE_VALUES",
    "CATEGORIES",
    "COLOURS",
    "DAY",
    "EVENT_PROBS",
    "EVENT_TYPES",
    "PATTERNS",
    "PRICE_BANDS",
    "SyntheticImageRenderer",
    "SyntheticWorld",
    "WorldConfig",
    "generate_world",
    "render_images",
    "render_item_image",
    "synthetic_dataset",
]

DAY = 86_400.0


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
    return generate_world(world_config_from_settings(config)).dataset
