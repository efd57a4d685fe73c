"""MovieLens readers on small hand-written copies of the original file formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from simulations.datasets.movielens import ML1M_GENRES, ML100K_GENRES, read_ml1m, read_ml100k

CHILDREN = "Children's"


def flags(*genres: str) -> str:
    return "|".join("1" if g in genres else "0" for g in ML100K_GENRES)


def write_ml100k(directory: Path) -> Path:
    items = [
        f"1|Toy Story (1995)|01-Jan-1995||http://x/1|{flags('Animation', CHILDREN, 'Comedy')}",
        f"2|GoldenEye (1995)|01-Jan-1995||http://x/2|{flags('Action', 'Adventure', 'Thriller')}",
        f"3|Café Noir (1996)|||http://x/3|{flags('Drama')}",
        f"4|unknown||||{flags('unknown')}",
        f"5|Nothing Here|||http://x/5|{flags()}",
    ]
    (directory / "u.item").write_bytes(("\n".join(items) + "\n").encode("latin-1"))
    ratings = ["2\t1\t4\t100", "1\t2\t3\t50", "1\t1\t5\t10", "2\t3\t2\t90", "10\t4\t1\t5"]
    (directory / "u.data").write_text("\n".join(ratings) + "\n")
    return directory


def test_ml100k_catalog(tmp_path: Path) -> None:
    data = read_ml100k(write_ml100k(tmp_path))
    cat = data.catalog
    assert data.name == "ml-100k"
    assert cat.ids.tolist() == ["1", "2", "3", "4", "5"]
    assert cat.text.tolist() == [
        "Toy Story (1995) | Animation, Children's, Comedy",
        "GoldenEye (1995) | Action, Adventure, Thriller",
        "Café Noir (1996) | Drama",
        "unknown | unknown",
        "Nothing Here",
    ]
    assert cat.category_names == ML100K_GENRES
    names = [cat.category_names[c] if c >= 0 else None for c in cat.category]
    assert names == ["Animation", "Action", "Drama", "unknown", None]
    assert cat.attributes["genres"].tolist() == [
        "Animation|Children's|Comedy",
        "Action|Adventure|Thriller",
        "Drama",
        "unknown",
        "",
    ]
    np.testing.assert_array_equal(cat.attributes["year"], [1995, 1995, 1996, np.nan, np.nan])


def test_ml100k_interactions(tmp_path: Path) -> None:
    inter = read_ml100k(write_ml100k(tmp_path)).interactions
    assert len(inter) == 5
    assert inter.n_items == 5
    assert inter.user_ids.tolist() == ["1", "10", "2"]
    seqs = inter.sequences()
    assert [seqs[u].tolist() for u in range(3)] == [[0, 1], [3], [2, 0]]
    assert seqs.timestamps.tolist() == [10.0, 50.0, 5.0, 90.0, 100.0]
    assert inter.rating.tolist() == [5.0, 3.0, 1.0, 2.0, 4.0]


def write_ml1m(directory: Path) -> Path:
    movies = [
        "1::Toy Story (1995)::Animation|Children's|Comedy",
        "2::Jumanji (1995)::Adventure|Children's|Fantasy",
        "3::Dôme (2000)::IMAX|Drama",
        "4::Untitled::",
    ]
    (directory / "movies.dat").write_bytes(("\n".join(movies) + "\n").encode("latin-1"))
    ratings = [
        "1::3::5::978300760",
        "1::1::3::978300700",
        "2::2::4::978300800",
        "2::4::1::978300100",
    ]
    (directory / "ratings.dat").write_text("\n".join(ratings) + "\n")
    return directory


def test_ml1m(tmp_path: Path) -> None:
    data = read_ml1m(write_ml1m(tmp_path))
    cat = data.catalog
    assert data.name == "ml-1m"
    assert cat.ids.tolist() == ["1", "2", "3", "4"]
    assert cat.text.tolist() == [
        "Toy Story (1995) | Animation, Children's, Comedy",
        "Jumanji (1995) | Adventure, Children's, Fantasy",
        "Dôme (2000) | IMAX, Drama",
        "Untitled",
    ]
    assert cat.category_names == (*ML1M_GENRES, "IMAX")
    assert cat.category.tolist() == [
        ML1M_GENRES.index("Animation"),
        ML1M_GENRES.index("Adventure"),
        len(ML1M_GENRES),
        -1,
    ]
    assert cat.attributes["genres"].tolist()[2] == "IMAX|Drama"
    np.testing.assert_array_equal(cat.attributes["year"], [1995, 1995, 2000, np.nan])
    inter = data.interactions
    assert inter.user_ids.tolist() == ["1", "2"]
    seqs = inter.sequences()
    assert [seqs[u].tolist() for u in range(2)] == [[0, 2], [3, 1]]
    assert seqs.timestamps.tolist() == [978300700.0, 978300760.0, 978300100.0, 978300800.0]
    assert inter.rating.tolist() == [3.0, 5.0, 1.0, 4.0]
