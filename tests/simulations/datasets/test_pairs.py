"""The plain ``user item`` format of SASRec / BERT4Rec."""

from __future__ import annotations

from pathlib import Path

from simulations.datasets.pairs import read_user_item_pairs


def test_pairs(tmp_path: Path) -> None:
    path = tmp_path / "Beauty.txt"
    path.write_text("1 10\n1 20\n2 20\n1 30\n\n2\t10\n10 30\n")
    data = read_user_item_pairs(path)
    assert data.name == "Beauty"
    cat = data.catalog
    assert cat.ids.tolist() == ["10", "20", "30"]
    assert cat.text.tolist() == ["item 10", "item 20", "item 30"]
    assert cat.category.tolist() == [-1, -1, -1]
    assert cat.category_names == ()
    inter = data.interactions
    assert inter.rating is None
    assert inter.user_ids.tolist() == ["1", "10", "2"]
    seqs = inter.sequences()
    assert [seqs[u].tolist() for u in range(3)] == [[0, 1, 2], [2], [1, 0]]
    # timestamps are 0-based line indices (the blank line 5 counts as a line)
    assert seqs.timestamps.tolist() == [0.0, 1.0, 3.0, 6.0, 2.0, 5.0]


def test_pairs_repeated_items_keep_line_order(tmp_path: Path) -> None:
    path = tmp_path / "seq.txt"
    path.write_text("u 3\nu 1\nu 3\nu 2\n")
    data = read_user_item_pairs(path)
    assert data.catalog.ids.tolist() == ["3", "1", "2"]
    assert data.interactions.sequences()[0].tolist() == [0, 1, 0, 2]
