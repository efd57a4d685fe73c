"""RecBole atomic files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from simulations.datasets.recbole import read_recbole_atomic


def write(path: Path, *lines: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_inter_and_item(tmp_path: Path) -> None:
    d = tmp_path / "ml-tiny"
    write(
        d / "ml-tiny.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float",
        "196\t242\t3\t881250949",
        "186\t302\t3\t891717742",
        "196\t302\t4\t881250000",
        "22\t1\t1\t878887116",
    )
    write(
        d / "ml-tiny.item",
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\tscore:float",
        "1\tToy Story\t1995\tAnimation Children's Comedy\t4.5",
        "242\tKolya\t1996\tComedy\t",
        "302\tL.A. Confidential\t1997\tCrime Film-Noir Mystery Thriller\t3",
        "999\tNever Rated\t\t\t1",
    )
    data = read_recbole_atomic(d)
    assert data.name == "ml-tiny"
    cat = data.catalog
    assert cat.ids.tolist() == ["1", "242", "302", "999"]
    assert cat.text.tolist() == [
        "Toy Story | 1995 | Animation, Children's, Comedy",
        "Kolya | 1996 | Comedy",
        "L.A. Confidential | 1997 | Crime, Film-Noir, Mystery, Thriller",
        "Never Rated",
    ]
    assert cat.category_names == ("Animation", "Comedy", "Crime")
    assert cat.category.tolist() == [0, 1, 2, -1]
    assert cat.attributes["release_year"].tolist() == ["1995", "1996", "1997", ""]
    assert cat.attributes["class"].tolist()[0] == "Animation Children's Comedy"
    np.testing.assert_array_equal(cat.attributes["score"], [4.5, np.nan, 3.0, 1.0])
    inter = data.interactions
    assert inter.user_ids.tolist() == ["186", "196", "22"]
    seqs = inter.sequences()
    assert [seqs[u].tolist() for u in range(3)] == [[2], [2, 1], [0]]
    assert seqs.timestamps.tolist() == [891717742.0, 881250000.0, 881250949.0, 878887116.0]
    assert inter.rating.tolist() == [3.0, 4.0, 3.0, 1.0]


def test_inter_only_without_timestamp(tmp_path: Path) -> None:
    d = tmp_path / "folder"
    write(
        d / "seqs.inter",
        "item_id:token\tuser_id:token\textra:float_seq",
        "b\tu1\t1 2",
        "a\tu2\t",
        "c\tu1\t3",
        "a\tu1\t",
    )
    data = read_recbole_atomic(d, name="seqs")
    assert data.name == "seqs"
    cat = data.catalog
    assert cat.ids.tolist() == ["b", "a", "c"]
    assert cat.text.tolist() == ["item b", "item a", "item c"]
    assert cat.category_names == ()
    inter = data.interactions
    assert inter.rating is None
    seqs = inter.sequences()
    assert [seqs[u].tolist() for u in range(2)] == [[0, 2, 1], [1]]
    assert seqs.timestamps.tolist() == [0.0, 2.0, 3.0, 1.0]


def test_genre_field_as_category(tmp_path: Path) -> None:
    d = tmp_path / "shop"
    write(d / "shop.inter", "user_id:token\titem_id:token", "u\tp2", "u\tp1")
    write(
        d / "shop.item",
        "item_id:token\ttitle:token\tgenre:token",
        "p1\tLamp\tHome",
        "p2\tPen\tOffice",
    )
    data = read_recbole_atomic(d)
    assert data.catalog.text.tolist() == ["Lamp | Home", "Pen | Office"]
    assert data.catalog.category_names == ("Home", "Office")
    assert data.catalog.category.tolist() == [0, 1]
    assert data.interactions.sequences()[0].tolist() == [1, 0]
