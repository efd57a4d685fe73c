"""Item images of the synthetic world, drawn with PIL from an item's attributes.

An image shows the item's pattern in its colour on a category-tinted background, framed by a
border whose width grows with the price band. :class:`SyntheticImageRenderer` is the catalog's
(picklable) image renderer.
"""

from __future__ import annotations

import colorsys
from typing import Any

import numpy as np

from ranking.data.catalog import Catalog
from ranking.errors import ConfigError
from simulations.datasets.synthetic_config import COLOURS, PATTERNS, PRICE_BANDS

__all__ = ["SyntheticImageRenderer", "render_images", "render_item_image"]


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
