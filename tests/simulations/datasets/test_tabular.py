"""Generic CSV / Parquet tables with a column mapping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ranking.errors import ConfigError
from simulations.datasets.tabular import read_table

COLUMNS = {"user": "uid", "item": "iid", "timestamp": "when", "rating": "stars"}


def test_csv_with_numeric_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(
        'uid,iid,when,stars,ignored\nb,x,30,5,q\na,y,20,4,q\nb,y,10,3,q\n\na,"z",5,1,q\n'
    )
    data = read_table(path, COLUMNS)
    assert data.name == "log"
    assert data.catalog.ids.tolist() == ["x", "y", "z"]
    assert data.catalog.text.tolist() == ["item x", "item y", "item z"]
    inter = data.interactions
    assert inter.user_ids.tolist() == ["a", "b"]
    seqs = inter.sequences()
    assert [seqs[u].tolist() for u in range(2)] == [[2, 1], [1, 0]]
    assert seqs.timestamps.tolist() == [5.0, 20.0, 10.0, 30.0]
    assert inter.rating.tolist() == [1.0, 4.0, 3.0, 5.0]


def test_csv_iso_dates_sessions_events_and_no_rating(tmp_path: Path) -> None:
    path = tmp_path / "events.tsv"
    path.write_text(
        "u\ti\tt\ts\te\n"
        "1\tA\t2024-01-01T00:00:10\ts9\tview\n"
        "1\tB\t2024-01-01T00:00:00\ts9\tbuy\n"
        "2\tA\t2024-01-02\ts1\tview\n"
    )
    cols = {"user": "u", "item": "i", "timestamp": "t", "session": "s", "event": "e"}
    inter = read_table(path, cols, sep="\t").interactions
    day = pd.Timestamp("2024-01-01", tz="UTC").timestamp()
    assert inter.timestamp.tolist() == [day, day + 10, day + 86400]
    assert inter.item.tolist() == [1, 0, 0]
    assert inter.event_names == ("buy", "view")
    assert inter.event.tolist() == [0, 1, 1]
    assert inter.session.tolist() == [1, 1, 0]  # sorted session ids: s1 -> 0, s9 -> 1
    assert inter.rating is None


def test_no_timestamp_means_row_order(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("user,item\nu,3\nu,1\nv,3\nu,2\n")
    inter = read_table(path, {"user": "user", "item": "item"}).interactions
    assert inter.sequences()[0].tolist() == [0, 1, 2]
    assert inter.timestamp.tolist() == [0.0, 1.0, 3.0, 2.0]


def test_item_table(tmp_path: Path) -> None:
    items = tmp_path / "items.csv"
    items.write_text(
        "pid,name,cat,added,live,img\n"
        "p1,Red lamp,home,100,true,img/p1.png\n"
        "p2,,office,200,0,\n"
        "p3,Blue pen,office,300,yes,/abs/p3.png\n"
    )
    log = tmp_path / "log.csv"
    log.write_text("uid,iid,when\nu,p3,2\nu,p1,1\n")
    data = read_table(
        log,
        {"user": "uid", "item": "iid", "timestamp": "when"},
        items_path=items,
        item_columns={
            "item": "pid",
            "text": "name",
            "category": "cat",
            "created_at": "added",
            "available": "live",
            "image_path": "img",
        },
    )
    cat = data.catalog
    assert cat.ids.tolist() == ["p1", "p2", "p3"]
    assert cat.text.tolist() == ["Red lamp", "item p2", "Blue pen"]
    assert cat.category_names == ("home", "office")
    assert cat.category.tolist() == [0, 1, 1]
    assert cat.created_at.tolist() == [100.0, 200.0, 300.0]
    assert cat.available.tolist() == [True, False, True]
    assert cat.image_paths.tolist() == [str(tmp_path / "img/p1.png"), "", "/abs/p3.png"]
    assert data.interactions.sequences()[0].tolist() == [0, 2]


def test_item_table_default_mapping(tmp_path: Path) -> None:
    items = tmp_path / "items.csv"
    items.write_text("item,text,category,other\n7,Seven,odd,x\n8,Eight,even,y\n")
    log = tmp_path / "log.csv"
    log.write_text("user,item\nu,8\n")
    data = read_table(log, {"user": "user", "item": "item"}, items_path=items)
    assert data.catalog.text.tolist() == ["Seven", "Eight"]
    assert data.catalog.category_names == ("even", "odd")
    assert data.catalog.category.tolist() == [1, 0]
    assert data.interactions.item.tolist() == [1]


def test_parquet(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pd.DataFrame(
        {
            "user": [10, 2, 10],
            "item": [5, 5, 6],
            "ts": pd.to_datetime(
                ["2024-01-01 00:00:05", "2024-01-01 00:00:00", "2024-01-01 00:00:01"]
            ),
            "r": [1.5, 2.0, 3.5],
        }
    ).to_parquet(path)
    items = tmp_path / "items.parquet"
    pd.DataFrame(
        {"item": [6, 5, 9], "text": ["six", "five", "nine"], "available": [True, True, False]}
    ).to_parquet(items)
    data = read_table(
        path, {"user": "user", "item": "item", "timestamp": "ts", "rating": "r"}, items_path=items
    )
    assert data.catalog.ids.tolist() == ["6", "5", "9"]
    assert data.catalog.available.tolist() == [True, True, False]
    inter = data.interactions
    assert inter.user_ids.tolist() == ["10", "2"]
    day = pd.Timestamp("2024-01-01", tz="UTC").timestamp()
    np.testing.assert_allclose(inter.timestamp, [day + 1, day + 5, day])
    assert inter.item.tolist() == [0, 1, 1]
    assert inter.rating.tolist() == [3.5, 1.5, 2.0]


def test_bad_mappings_raise_config_error(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("user,item\nu,1\n")
    with pytest.raises(ConfigError, match="unknown key 'usr'"):
        read_table(path, {"usr": "user", "item": "item"})
    with pytest.raises(ConfigError, match="'user' is required"):
        read_table(path, {"item": "item"})
    with pytest.raises(ConfigError, match="without items_path"):
        read_table(path, {"user": "user", "item": "item"}, item_columns={"item": "item"})
