"""Every reader reports a malformed line, field or column as a DataError naming the file, the line
and what was expected. (Missing, empty and unreadable files and item-id errors:
test_bad_input_files.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from ranking.errors import DataError
from simulations.datasets.movielens import ML100K_GENRES, read_ml1m, read_ml100k
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
    write_bytes,
)

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


@pytest.mark.parametrize(("match", "build"), cases(MALFORMED))
def test_malformed_line(tmp_path: Path, match: str, build: Case) -> None:
    check_data_error(tmp_path, match, build)


@pytest.mark.parametrize(("match", "build"), cases(MISSING_COLUMN))
def test_missing_column(tmp_path: Path, match: str, build: Case) -> None:
    err = check_data_error(tmp_path, match, build)
    assert err.column is not None and err.column in str(err)


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
