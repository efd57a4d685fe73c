"""Fixture files for the bad-input tests of the dataset readers, and the shared DataError check.

A case is ``(match, build)``: ``build(directory)`` writes the fixture files and returns the failing
call, the file the error must name and the line it must name (or ``None``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from ranking.errors import DataError
from simulations.datasets.movielens import ML100K_GENRES

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


def cases(group: dict[str, tuple[str, Case]]) -> list[object]:
    """The ``(match, build)`` cases of ``group`` as pytest params, each with its name as id."""
    return [pytest.param(match, build, id=name) for name, (match, build) in group.items()]


def check_data_error(tmp_path: Path, match: str, build: Case) -> DataError:
    """Run the case's failing call; its DataError must match and name the file and the line."""
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
