"""Readers of the original GroupLens MovieLens files (ML-100K and ML-1M).

Items keep the order of the movie file; their text is ``"title | genre1, genre2"``, their category
the first of their genres (``category_names`` is the genre list) and their attributes ``genres``
(``"A|B"``) and ``year`` (float, NaN where no year can be read).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ranking.data.catalog import Catalog
from ranking.data.dataset import Dataset
from ranking.data.interactions import build_interactions
from simulations.datasets._io import (
    Records,
    index_items,
    read_records,
    require_dir,
    to_floats,
    to_ids,
    unique_lookup,
)

ML100K_GENRES: tuple[str, ...] = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
"""The genre flags of ML-100K's ``u.item``, in file order."""

ML1M_GENRES: tuple[str, ...] = ML100K_GENRES[1:]
"""The genres of ML-1M's ``movies.dat`` (its README's list)."""

_TITLE_YEAR = re.compile(r"\((\d{4})\)\s*$")
_DATE_YEAR = re.compile(r"(\d{4})$")


def _title_year(title: str) -> float:
    match = _TITLE_YEAR.search(title)
    return float(match.group(1)) if match else np.nan


def _movie_catalog(
    records: Records,
    ids: list[str],
    titles: Sequence[str],
    genres: Sequence[Sequence[str]],
    years: Sequence[float],
    genre_names: tuple[str, ...],
    id_column: str,
) -> Catalog:
    """The catalog shared by both MovieLens readers (see the module docstring)."""
    unique_lookup(ids, records, id_column)
    code = {name: i for i, name in enumerate(genre_names)}
    text = [f"{t} | {', '.join(g)}" if g else t for t, g in zip(titles, genres, strict=True)]
    return Catalog(
        ids=np.asarray(ids, dtype=str),
        text=np.asarray(text, dtype=str),
        category=np.asarray([code[g[0]] if g else -1 for g in genres], dtype=np.int32),
        category_names=genre_names,
        attributes={
            "genres": np.asarray(["|".join(g) for g in genres], dtype=str),
            "year": np.asarray(years, dtype=np.float64),
        },
    )


def _ratings(records: Records, catalog: Catalog, item_path: Path, name: str) -> Dataset:
    """``user, item, rating, timestamp`` records as a dataset over ``catalog``."""
    users, items, ratings, stamps = records.columns
    lookup = {item_id: i for i, item_id in enumerate(catalog.ids.tolist())}
    interactions = build_interactions(
        to_ids(users, records, "user"),
        index_items(items, lookup, records, "item", item_path),
        to_floats(stamps, records, "timestamp", expected="a number (seconds)"),
        catalog.n_items,
        rating=to_floats(ratings, records, "rating"),
    )
    return Dataset(name=name, catalog=catalog, interactions=interactions)


def read_ml100k(directory: str | Path) -> Dataset:
    """MovieLens 100K from its original ``u.data`` and ``u.item`` files."""
    directory = require_dir(directory)
    item_path = directory / "u.item"
    n_genres = len(ML100K_GENRES)
    movies = read_records(
        item_path,
        sep="|",
        n_fields=5 + n_genres,
        encoding="latin-1",
        layout=f"id|title|release date|video release date|IMDb URL|{n_genres} genre flags",
    )
    flags = np.asarray(movies.columns[5:], dtype=str)  # [genre, item]
    bad = (flags != "0") & (flags != "1")
    if bad.any():
        genre, row = (int(i) for i in np.argwhere(bad)[0])
        raise movies.error(
            row,
            f"expected a genre flag 0 or 1, got {str(flags[genre, row])!r}",
            ML100K_GENRES[genre],
        )
    genres = [[ML100K_GENRES[g] for g in np.flatnonzero(col == "1")] for col in flags.T]
    titles = movies.columns[1]
    years = []
    for title, date in zip(titles, movies.columns[2], strict=True):
        match = _DATE_YEAR.search(date)
        years.append(float(match.group(1)) if match else _title_year(title))
    ids = to_ids(movies.columns[0], movies, "id")
    catalog = _movie_catalog(movies, ids, titles, genres, years, ML100K_GENRES, "id")
    ratings = read_records(
        directory / "u.data", sep="\t", n_fields=4, layout="user<TAB>item<TAB>rating<TAB>timestamp"
    )
    return _ratings(ratings, catalog, item_path, "ml-100k")


def read_ml1m(directory: str | Path) -> Dataset:
    """MovieLens 1M from its original ``ratings.dat`` and ``movies.dat`` files.

    Genres outside the README's list are appended to ``category_names`` in order of appearance.
    """
    directory = require_dir(directory)
    item_path = directory / "movies.dat"
    movies = read_records(
        item_path, sep="::", n_fields=3, encoding="latin-1", layout="MovieID::Title::Genres"
    )
    ids = to_ids(movies.columns[0], movies, "MovieID")
    titles = movies.columns[1]
    genres = [[g.strip() for g in field.split("|") if g.strip()] for field in movies.columns[2]]
    names = list(ML1M_GENRES)
    for genre_list in genres:
        for genre in genre_list:
            if genre not in names:
                names.append(genre)
    years = [_title_year(t) for t in titles]
    catalog = _movie_catalog(movies, ids, titles, genres, years, tuple(names), "MovieID")
    ratings = read_records(
        directory / "ratings.dat", sep="::", n_fields=4, layout="UserID::MovieID::Rating::Timestamp"
    )
    return _ratings(ratings, catalog, item_path, "ml-1m")
