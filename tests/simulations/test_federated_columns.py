"""The federated results table shows epsilon when DP ran, and only then."""

from __future__ import annotations

from simulations.report import rows_table
from simulations.run import FEDERATED_COLUMNS, federated_columns


def test_epsilon_is_a_column_when_a_round_carries_it():
    plain = [{"round": 0, "ndcg@10": 0.1}, {"round": 1, "ndcg@10": 0.2}]
    assert federated_columns(plain) == FEDERATED_COLUMNS
    private = [{"round": 0, "ndcg@10": 0.1}, {"round": 1, "ndcg@10": 0.2, "epsilon": 1.25}]
    columns = federated_columns(private)
    assert columns.index("epsilon") == columns.index("val_ndcg@10") + 1
    table = rows_table("federated", private, columns)
    epsilon = next(c for c in table.columns if c.header == "epsilon")
    assert list(epsilon.cells) == ["", "1.2500"]  # round 0 released nothing yet


def test_the_central_reference_adds_its_best_epoch():
    rows = [{"round": 1, "epsilon": 0.5}, {"round": "central", "best_epoch": 3}]
    assert federated_columns(rows)[-2:] == ["seconds", "best_epoch"]
    assert "epsilon" in federated_columns(rows)
