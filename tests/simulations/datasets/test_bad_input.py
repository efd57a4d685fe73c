"""Every reader reports bad input as a DataError naming the file, the line and what was expected."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from ranking.errors import DataError
from simulations.datasets.movielens import ML100K_GENRES, read_ml1m, read_ml100k
from simulations.datasets.pairs import read_user_item_pairs
from simulations.datasets.recbole import read_recbole_atomic
from simulations.datasets.tabular import read_table

Case = Callable[[Path], tuple[Callable[[], object], Path, int | None]]
"""Writes fixture files under a directory; returns (the failing call, the file to name, line)."""


def write(path: Path, *lines: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def flags(*genres: str) -> str:
    return "|".join("1" if g in genres else "0" for g in ML100K_GENRES)


def ml100k(d: Path, data: list[str] | None = None, items: list[str] | None = None) -> Path:
    write(
        d / "u.item",
        *(items or [f"1|A (1995)|01-Jan-1995||u|{flags('Action')}", f"2|B||||{flags()}"]),
    )
    write(d / "u.data", *(data if data is not None else ["1\t1\t5\t10", "1\t2\t4\t20"]))
    return d


def ml1m(d: Path, ratings: list[str] | None = None, movies: list[str] | None = None) -> Path:
    write(d / "movies.dat", *(movies or ["1::A (1995)::Action", "2::B (1996)::Drama|War"]))
    write(d / "ratings.dat", *(ratings if ratings is not None else ["1::1::5::10", "1::2::4::20"]))
    return d


INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"


def recbole(d: Path, inter: list[str] | None = None, item: list[str] | None = None) -> Path:
    d = d / "ds"
    write(d / "ds.inter", *(inter if inter is not None else [INTER_HEADER, "u\t1\t5\t10"]))
    if item is not None:
        write(d / "ds.item", *item)
    return d


COLS = {"user": "user", "item": "item", "timestamp": "ts", "rating": "r"}


def csv(d: Path, *rows: str, header: str = "user,item,ts,r") -> Path:
    return write(d / "log.csv", header, *rows)


def parquet(d: Path, frame: pd.DataFrame) -> Path:
    path = d / "log.parquet"
    frame.to_parquet(path)
    return path


# ------------------------------------------------------------------------------------------------
# The cases: (match, builder). Each builder returns (call, path that must be named, line or None).
# ------------------------------------------------------------------------------------------------

MALFORMED: dict[str, tuple[str, Case]] = {
    "ml100k u.data field count": (
        r"expected 4 tab-separated fields \(user<TAB>item<TAB>rating<TAB>timestamp\), found 3",
        lambda d: (lambda: read_ml100k(ml100k(d, ["1\t1\t5\t10", "", "1\t2\t4"])), d / "u.data", 3),
    ),
    "ml100k u.item field count": (
        r"expected 24 '\|'-separated fields",
        lambda d: (
            lambda: read_ml100k(ml100k(d, items=["1|A|||u|" + flags(), "2|B"])),
            d / "u.item",
            2,
        ),
    ),
    "ml100k genre flag": (
        r"column 'Drama': expected a genre flag 0 or 1, got '2'",
        lambda d: (
            lambda: read_ml100k(
                ml100k(
                    d,
                    items=[
                        "1|A|||u|" + flags(),
                        "2|B|||u|" + "|".join("2" if g == "Drama" else "0" for g in ML100K_GENRES),
                    ],
                )
            ),
            d / "u.item",
            2,
        ),
    ),
    "ml100k rating not numeric": (
        r"column 'rating': expected a number, got 'x'",
        lambda d: (lambda: read_ml100k(ml100k(d, ["1\t1\t5\t10", "1\t2\tx\t20"])), d / "u.data", 2),
    ),
    "ml1m field count": (
        r"expected 4 '::'-separated fields \(UserID::MovieID::Rating::Timestamp\), found 5",
        lambda d: (
            lambda: read_ml1m(ml1m(d, ["1::1::5::10", "1::2::4::20::9"])),
            d / "ratings.dat",
            2,
        ),
    ),
    "ml1m movies field count": (
        r"expected 3 '::'-separated fields \(MovieID::Title::Genres\), found 2",
        lambda d: (
            lambda: read_ml1m(ml1m(d, movies=["1::A::Action", "2::B"])),
            d / "movies.dat",
            2,
        ),
    ),
    "ml1m timestamp not numeric": (
        r"column 'timestamp': expected a number \(seconds\), got 'yesterday'",
        lambda d: (
            lambda: read_ml1m(ml1m(d, ["1::1::5::10", "1::2::4::20", "2::2::4::yesterday"])),
            d / "ratings.dat",
            3,
        ),
    ),
    "pairs field count": (
        r"expected 2 whitespace-separated fields \(user item\), found 3",
        lambda d: (
            lambda: read_user_item_pairs(write(d / "p.txt", "1 2", "1 2 3")),
            d / "p.txt",
            2,
        ),
    ),
    "pairs bad encoding": (
        r"cannot decode the line as utf-8",
        lambda d: (
            lambda: read_user_item_pairs(write_bytes(d / "p.txt", b"1 2\n1 \xff\xfe\n")),
            d / "p.txt",
            2,
        ),
    ),
    "recbole field count": (
        r"expected 4 tab-separated fields as in the header, found 3",
        lambda d: (
            lambda: read_recbole_atomic(recbole(d, [INTER_HEADER, "u\t1\t5\t10", "u\t2\t5"])),
            d / "ds" / "ds.inter",
            3,
        ),
    ),
    "recbole rating not numeric": (
        r"column 'rating': expected a number, got 'abc'",
        lambda d: (
            lambda: read_recbole_atomic(recbole(d, [INTER_HEADER, "u\t1\t5\t10", "u\t2\tabc\t11"])),
            d / "ds" / "ds.inter",
            3,
        ),
    ),
    "recbole timestamp not finite": (
        r"column 'timestamp': expected a number \(seconds\), got 'nan'",
        lambda d: (
            lambda: read_recbole_atomic(recbole(d, [INTER_HEADER, "u\t1\t5\tnan"])),
            d / "ds" / "ds.inter",
            2,
        ),
    ),
    "recbole item float": (
        r"column 'price': expected a number, got 'cheap'",
        lambda d: (
            lambda: read_recbole_atomic(
                recbole(d, item=["item_id:token\tprice:float", "1\t2.5", "2\tcheap"])
            ),
            d / "ds" / "ds.item",
            3,
        ),
    ),
    "csv field count": (
        r"expected 4 fields as in the header, found 5",
        lambda d: (lambda: read_table(csv(d, "u,1,1,5", "u,2,2,5,extra"), COLS), d / "log.csv", 3),
    ),
    "csv rating not numeric": (
        r"column 'r': expected a number, got 'five'",
        lambda d: (lambda: read_table(csv(d, "u,1,1,5", "u,2,2,five"), COLS), d / "log.csv", 3),
    ),
    "csv numeric timestamp": (
        r"column 'ts': expected a number \(seconds\), got 'soon'",
        lambda d: (
            lambda: read_table(csv(d, "u,1,1,5", "u,2,2,5", "u,3,soon,5"), COLS),
            d / "log.csv",
            4,
        ),
    ),
    "csv date timestamp": (
        r"column 'ts': expected a number \(seconds\) or an ISO 8601 date-time, got '2024-13-45'",
        lambda d: (
            lambda: read_table(csv(d, "u,1,2024-01-01,5", "u,2,2024-13-45,5"), COLS),
            d / "log.csv",
            3,
        ),
    ),
    "csv empty user id": (
        r"column 'user': empty id",
        lambda d: (lambda: read_table(csv(d, "u,1,1,5", ",2,2,5"), COLS), d / "log.csv", 3),
    ),
    "csv item table availability": (
        r"column 'available': expected a boolean",
        lambda d: (
            lambda: read_table(
                csv(d, "u,1,1,5"),
                COLS,
                items_path=write(d / "items.csv", "item,available", "1,yes", "2,maybe"),
            ),
            d / "items.csv",
            3,
        ),
    ),
}

MISSING_COLUMN: dict[str, tuple[str, Case]] = {
    "recbole inter without item_id": (
        r"column 'item_id': missing field 'item_id' in the header",
        lambda d: (
            lambda: read_recbole_atomic(recbole(d, ["user_id:token\titem:token", "u\t1"])),
            d / "ds" / "ds.inter",
            1,
        ),
    ),
    "recbole item without item_id": (
        r"column 'item_id': missing field 'item_id' in the header",
        lambda d: (
            lambda: read_recbole_atomic(recbole(d, item=["id:token\ttitle:token_seq", "1\tA"])),
            d / "ds" / "ds.item",
            1,
        ),
    ),
    "recbole header without type": (
        r"column 'user_id': malformed header field 'user_id'; expected 'name:type'",
        lambda d: (
            lambda: read_recbole_atomic(recbole(d, ["user_id\titem_id:token", "u\t1"])),
            d / "ds" / "ds.inter",
            1,
        ),
    ),
    "recbole header unknown type": (
        r"malformed header field 'user_id:int'",
        lambda d: (
            lambda: read_recbole_atomic(recbole(d, ["user_id:int\titem_id:token", "u\t1"])),
            d / "ds" / "ds.inter",
            1,
        ),
    ),
    "recbole header repeated field": (
        r"field 'item_id' appears twice",
        lambda d: (
            lambda: read_recbole_atomic(
                recbole(d, ["user_id:token\titem_id:token\titem_id:float", "u\t1\t2"])
            ),
            d / "ds" / "ds.inter",
            1,
        ),
    ),
    "csv mapped column absent": (
        r"column 'stars': missing column 'stars' \(mapped from 'rating'\)",
        lambda d: (
            lambda: read_table(csv(d, "u,1,1,5"), {**COLS, "rating": "stars"}),
            d / "log.csv",
            None,
        ),
    ),
    "parquet mapped column absent": (
        r"column 'when': missing column 'when' \(mapped from 'timestamp'\)",
        lambda d: (
            lambda: read_table(
                parquet(d, pd.DataFrame({"user": ["u"], "item": ["1"]})),
                {"user": "user", "item": "item", "timestamp": "when"},
            ),
            d / "log.parquet",
            None,
        ),
    ),
    "item table column absent": (
        r"column 'pid': missing column 'pid' \(mapped from 'item'\)",
        lambda d: (
            lambda: read_table(
                csv(d, "u,1,1,5"),
                COLS,
                items_path=write(d / "items.csv", "item", "1"),
                item_columns={"item": "pid"},
            ),
            d / "items.csv",
            None,
        ),
    ),
}

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


def _cases(group: dict[str, tuple[str, Case]]) -> list[object]:
    return [pytest.param(match, build, id=name) for name, (match, build) in group.items()]


def _check(tmp_path: Path, match: str, build: Case) -> DataError:
    call, path, line = build(tmp_path)
    with pytest.raises(DataError, match=match) as info:
        call()
    err = info.value
    assert err.path == str(path)
    assert str(err).startswith(str(path))
    assert err.line == line
    if line is not None:
        assert f"{path}, line {line}" in str(err)
    return err


@pytest.mark.parametrize(("match", "build"), _cases(MALFORMED))
def test_malformed_line(tmp_path: Path, match: str, build: Case) -> None:
    _check(tmp_path, match, build)


@pytest.mark.parametrize(("match", "build"), _cases(MISSING_COLUMN))
def test_missing_column(tmp_path: Path, match: str, build: Case) -> None:
    err = _check(tmp_path, match, build)
    assert err.column is not None and err.column in str(err)


@pytest.mark.parametrize(("match", "build"), _cases(UNKNOWN_ITEM))
def test_unknown_item(tmp_path: Path, match: str, build: Case) -> None:
    _check(tmp_path, match, build)


@pytest.mark.parametrize(("match", "build"), _cases(DUPLICATE_ITEM))
def test_duplicate_item(tmp_path: Path, match: str, build: Case) -> None:
    _check(tmp_path, match, build)


@pytest.mark.parametrize(("match", "build"), _cases(EMPTY))
def test_empty_input(tmp_path: Path, match: str, build: Case) -> None:
    _check(tmp_path, match, build)


@pytest.mark.parametrize(("match", "build"), _cases(MISSING_FILE))
def test_missing_file(tmp_path: Path, match: str, build: Case) -> None:
    _check(tmp_path, match, build)


def test_parquet_null_rating_names_the_row(tmp_path: Path) -> None:
    path = parquet(
        tmp_path,
        pd.DataFrame({"user": ["a", "b"], "item": ["1", "2"], "ts": [1, 2], "r": [4.0, None]}),
    )
    with pytest.raises(
        DataError,
        match=re.escape(f"{path}, column 'r': row 2: expected a number, got an empty value"),
    ):
        read_table(path, COLS)


def test_unreadable_parquet(tmp_path: Path) -> None:
    path = write(tmp_path / "log.parquet", "not parquet at all")
    with pytest.raises(DataError, match="cannot read the Parquet file") as info:
        read_table(path, COLS)
    assert info.value.path == str(path)
