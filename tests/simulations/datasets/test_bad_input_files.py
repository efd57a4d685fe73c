"""Every reader reports a missing, empty or unreadable file, and an item id that the item table
does not hold or holds twice, as a DataError naming the file (and the line where there is one).
(Malformed lines and columns: test_bad_input.py.)"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ranking.errors import DataError
from simulations.datasets.movielens import read_ml1m, read_ml100k
from simulations.datasets.pairs import read_user_item_pairs
from simulations.datasets.recbole import read_recbole_atomic
from simulations.datasets.tabular import read_table
from tests.simulations.datasets.bad_input_builders import (
    COLS,
    INTER_HEADER,
    Case,
    cases,
    check_data_error,
    csv,
    flags,
    ml1m,
    ml100k,
    parquet,
    recbole,
    write,
)

UNKNOWN_ITEM: dict[str, tuple[str, Case]] = {
    "ml100k": (
        r"unknown item id '99': it is not in .*u\.item",
        lambda d: (
            lambda: read_ml100k(ml100k(d, ["1\t1\t5\t10", "1\t99\t4\t20"])),
            d / "u.data",
            2,
        ),
    ),
    "ml1m": (
        r"unknown item id '7': it is not in .*movies\.dat",
        lambda d: (lambda: read_ml1m(ml1m(d, ["1::7::5::10"])), d / "ratings.dat", 1),
    ),
    "recbole": (
        r"unknown item id 'zz': it is not in .*ds\.item",
        lambda d: (
            lambda: read_recbole_atomic(
                recbole(
                    d,
                    [INTER_HEADER, "u\t1\t5\t10", "v\t1\t5\t10", "u\tzz\t5\t11"],
                    ["item_id:token", "1"],
                )
            ),
            d / "ds" / "ds.inter",
            4,
        ),
    ),
    "tabular": (
        r"unknown item id '3': it is not in .*items\.csv",
        lambda d: (
            lambda: read_table(
                csv(d, "u,1,1,5", "u,3,2,5"),
                COLS,
                items_path=write(d / "items.csv", "item", "1", "2"),
            ),
            d / "log.csv",
            3,
        ),
    ),
    "parquet": (
        r"row 2: unknown item id '3'",
        lambda d: (
            lambda: read_table(
                parquet(d, pd.DataFrame({"user": ["u", "u"], "item": [1, 3]})),
                {"user": "user", "item": "item"},
                items_path=write(d / "items.csv", "item", "1"),
            ),
            d / "log.parquet",
            None,
        ),
    ),
}

DUPLICATE_ITEM: dict[str, tuple[str, Case]] = {
    "ml100k": (
        r"duplicate item id '1' \(first seen at line 1\)",
        lambda d: (
            lambda: read_ml100k(
                ml100k(d, items=["1|A|||u|" + flags(), "2|B|||u|" + flags(), "1|C|||u|" + flags()])
            ),
            d / "u.item",
            3,
        ),
    ),
    "recbole": (
        r"duplicate item id '1' \(first seen at line 2\)",
        lambda d: (
            lambda: read_recbole_atomic(recbole(d, item=["item_id:token", "1", "1"])),
            d / "ds" / "ds.item",
            3,
        ),
    ),
    "tabular": (
        r"duplicate item id '1'",
        lambda d: (
            lambda: read_table(
                csv(d, "u,1,1,5"), COLS, items_path=write(d / "items.csv", "item", "1", "2", "1")
            ),
            d / "items.csv",
            4,
        ),
    ),
}

EMPTY: dict[str, tuple[str, Case]] = {
    "ml100k u.data": (
        r"the file is empty; expected lines of user<TAB>item",
        lambda d: (lambda: read_ml100k(ml100k(d, ["", "  "])), d / "u.data", None),
    ),
    "ml100k u.item": (
        r"the file is empty",
        lambda d: (lambda: read_ml100k(ml100k(d, items=[""])), d / "u.item", None),
    ),
    "ml1m ratings": (
        r"the file is empty",
        lambda d: (lambda: read_ml1m(ml1m(d, [])), d / "ratings.dat", None),
    ),
    "pairs": (
        r"the file is empty; expected lines of user item",
        lambda d: (lambda: read_user_item_pairs(write(d / "p.txt")), d / "p.txt", None),
    ),
    "recbole header only": (
        r"no data rows after the header",
        lambda d: (
            lambda: read_recbole_atomic(recbole(d, [INTER_HEADER])),
            d / "ds" / "ds.inter",
            None,
        ),
    ),
    "recbole no header": (
        r"the file is empty; expected a header line",
        lambda d: (lambda: read_recbole_atomic(recbole(d, [])), d / "ds" / "ds.inter", None),
    ),
    "csv header only": (
        r"no data rows after the header",
        lambda d: (lambda: read_table(csv(d), COLS), d / "log.csv", None),
    ),
    "csv no header": (
        r"the file is empty; expected a header line",
        lambda d: (lambda: read_table(write(d / "log.csv"), COLS), d / "log.csv", None),
    ),
    "parquet no rows": (
        r"the table has no rows",
        lambda d: (
            lambda: read_table(
                parquet(d, pd.DataFrame({"user": pd.Series([], dtype=str), "item": []})), COLS
            ),
            d / "log.parquet",
            None,
        ),
    ),
}

MISSING_FILE: dict[str, tuple[str, Case]] = {
    "ml100k directory": (
        r"directory not found",
        lambda d: (lambda: read_ml100k(d / "nope"), d / "nope", None),
    ),
    "ml100k u.data": (
        r"file not found",
        lambda d: (
            lambda: read_ml100k((ml100k(d), (d / "u.data").unlink())[0]),
            d / "u.data",
            None,
        ),
    ),
    "ml100k u.item": (
        r"file not found",
        lambda d: (
            lambda: read_ml100k((ml100k(d), (d / "u.item").unlink())[0]),
            d / "u.item",
            None,
        ),
    ),
    "ml1m movies.dat": (
        r"file not found",
        lambda d: (
            lambda: read_ml1m((ml1m(d), (d / "movies.dat").unlink())[0]),
            d / "movies.dat",
            None,
        ),
    ),
    "pairs": (
        r"file not found",
        lambda d: (lambda: read_user_item_pairs(d / "missing.txt"), d / "missing.txt", None),
    ),
    "recbole inter": (
        r"file not found",
        lambda d: (
            lambda: read_recbole_atomic(recbole(d), name="other"),
            d / "ds" / "other.inter",
            None,
        ),
    ),
    "tabular": (
        r"file not found",
        lambda d: (lambda: read_table(d / "none.csv", COLS), d / "none.csv", None),
    ),
    "tabular items": (
        r"file not found",
        lambda d: (
            lambda: read_table(csv(d, "u,1,1,5"), COLS, items_path=d / "no.csv"),
            d / "no.csv",
            None,
        ),
    ),
    "tabular not a file": (
        r"not a regular file",
        lambda d: (lambda: read_table(d, COLS), d, None),
    ),
}


@pytest.mark.parametrize(("match", "build"), cases(UNKNOWN_ITEM))
def test_unknown_item(tmp_path: Path, match: str, build: Case) -> None:
    check_data_error(tmp_path, match, build)


@pytest.mark.parametrize(("match", "build"), cases(DUPLICATE_ITEM))
def test_duplicate_item(tmp_path: Path, match: str, build: Case) -> None:
    check_data_error(tmp_path, match, build)


@pytest.mark.parametrize(("match", "build"), cases(EMPTY))
def test_empty_input(tmp_path: Path, match: str, build: Case) -> None:
    check_data_error(tmp_path, match, build)


@pytest.mark.parametrize(("match", "build"), cases(MISSING_FILE))
def test_missing_file(tmp_path: Path, match: str, build: Case) -> None:
    check_data_error(tmp_path, match, build)


def test_unreadable_parquet(tmp_path: Path) -> None:
    path = write(tmp_path / "log.parquet", "not parquet at all")
    with pytest.raises(DataError, match="cannot read the Parquet file") as info:
        read_table(path, COLS)
    assert info.value.path == str(path)
