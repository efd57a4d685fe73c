"""Shared parsing helpers of the dataset readers.

Every reader goes through these helpers so that bad input is reported the same way everywhere:
a :class:`~ranking.errors.DataError` naming the file, the 1-based line (or the row, for Parquet),
the column and what was expected.
"""

from __future__ import annotations

import csv
import gzip
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ranking.data.catalog import Catalog
from ranking.errors import DataError

# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def require_file(path: str | Path) -> Path:
    """``path`` as a :class:`Path`; raises :class:`DataError` if it is not an existing file."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path=path)
    if not path.is_file():
        raise DataError("not a regular file", path=path)
    return path


def require_dir(path: str | Path) -> Path:
    """``path`` as a :class:`Path`; raises :class:`DataError` if it is not an existing directory."""
    path = Path(path)
    if not path.exists():
        raise DataError("directory not found", path=path)
    if not path.is_dir():
        raise DataError("not a directory", path=path)
    return path


def file_stem(path: str | Path) -> str:
    """A file's name without its suffix (and without ``.gz``), used as the dataset name."""
    return Path(Path(path).name.removesuffix(".gz")).stem


def _decoded_lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for every line (line endings kept), decoding line by line so
    that a decoding error names the exact line. ``*.gz`` files are gunzipped transparently."""
    lineno = 0
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as handle:
            for lineno, raw in enumerate(handle, start=1):
                try:
                    text = raw.decode(encoding)
                except UnicodeDecodeError as exc:
                    raise DataError(
                        f"cannot decode the line as {encoding}: {exc.reason}",
                        path=path,
                        line=lineno,
                    ) from exc
                yield lineno, text
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read the file: {exc}", path=path, line=lineno or None) from exc


def iter_lines(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` for the non-blank lines of a text file (1-based numbers)."""
    for lineno, text in _decoded_lines(path, encoding):
        line = text.rstrip("\r\n")
        if line.strip():
            yield lineno, line


# --------------------------------------------------------------------------------------------
# Rows and records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Rows:
    """Where the data rows of a file came from, to report errors.

    ``lines`` holds the 1-based line number of each row; ``None`` means the format has no lines
    (Parquet) and errors name the 1-based row instead.
    """

    path: Path
    lines: np.ndarray | None

    def error(self, row: int, message: str, column: str | None = None) -> DataError:
        """A :class:`DataError` about data row ``row`` (0-based)."""
        if self.lines is None:
            return DataError(f"row {row + 1}: {message}", path=self.path, column=column)
        return DataError(message, path=self.path, line=int(self.lines[row]), column=column)


@dataclass(frozen=True, eq=False)
class Records(Rows):
    """The fields of a delimited text file, column by column (all strings, stripped)."""

    lines: np.ndarray
    header: tuple[str, ...] | None = None
    columns: tuple[list[str], ...] = ()

    def __len__(self) -> int:
        return len(self.lines)

    def column(self, name: str) -> list[str]:
        """The values of header field ``name``; raises :class:`DataError` if there is no such field."""
        if self.header is None or name not in self.header:
            raise DataError(f"missing column {name!r} in the header", path=self.path, column=name)
        return self.columns[self.header.index(name)]


def _describe_sep(sep: str | None) -> str:
    names = {None: "whitespace", "\t": "tab", ",": "comma", "|": "'|'", "::": "'::'", ";": "';'"}
    return names.get(sep, repr(sep))


def _finish(
    path: Path,
    rows: list[list[str]],
    lines: list[int],
    n_fields: int,
    header: tuple[str, ...] | None,
    layout: str,
) -> Records:
    if not rows:
        what = "no data rows after the header" if header is not None else "the file is empty"
        raise DataError(f"{what}; expected lines of {layout}", path=path)
    columns = tuple(list(col) for col in zip(*rows, strict=True))
    if not columns:  # only possible with zero fields per row
        columns = tuple([] for _ in range(n_fields))
    return Records(
        path=path, lines=np.asarray(lines, dtype=np.int64), header=header, columns=columns
    )


def read_records(
    path: str | Path,
    *,
    sep: str | None,
    n_fields: int | None = None,
    header: bool = False,
    encoding: str = "utf-8",
    layout: str = "",
    check_header: Callable[[Path, tuple[str, ...]], None] | None = None,
) -> Records:
    """Read a simple delimited text file (no quoting) into columns of stripped strings.

    ``sep=None`` splits on runs of whitespace. With ``header=True`` the first non-blank line is
    the header (passed to ``check_header`` before any data row is read) and fixes the number of
    fields; otherwise every line must have ``n_fields`` fields. ``layout`` describes a line for
    error messages, e.g. ``"user<TAB>item<TAB>rating<TAB>timestamp"``.
    """
    path = require_file(path)
    head: tuple[str, ...] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    split_desc = _describe_sep(sep)
    for lineno, line in iter_lines(path, encoding):
        fields = [f.strip() for f in line.split(sep)]
        if header and head is None:
            head = tuple(fields)
            n_fields = len(fields)
            if check_header is not None:
                check_header(path, head)
            continue
        if len(fields) != n_fields:
            shape = "as in the header" if header else f"({layout})"
            raise DataError(
                f"expected {n_fields} {split_desc}-separated fields {shape}, found {len(fields)}",
                path=path,
                line=lineno,
            )
        rows.append(fields)
        lines.append(lineno)
    if header and head is None:
        raise DataError(
            f"the file is empty; expected a header line and lines of {layout}", path=path
        )
    return _finish(path, rows, lines, n_fields or 0, head, layout)


def read_csv_records(path: str | Path, *, sep: str = ",", encoding: str = "utf-8") -> Records:
    """Read a CSV file with a header line (standard quoting) into columns of stripped strings."""
    path = require_file(path)
    numbered = _decoded_lines(path, encoding)
    lineno = 0

    def texts() -> Iterator[str]:
        nonlocal lineno
        for number, text in numbered:
            lineno = number
            yield text

    head: tuple[str, ...] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    reader = csv.reader(texts(), delimiter=sep)
    try:
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue
            fields = [f.strip() for f in fields]
            if head is None:
                head = tuple(fields)
                continue
            if len(fields) != len(head):
                raise DataError(
                    f"expected {len(head)} fields as in the header, found {len(fields)}",
                    path=path,
                    line=lineno,
                )
            rows.append(fields)
            lines.append(lineno)
    except csv.Error as exc:
        raise DataError(f"malformed CSV: {exc}", path=path, line=lineno or None) from exc
    if head is None:
        raise DataError("the file is empty; expected a header line and data rows", path=path)
    return _finish(
        path, rows, lines, len(head), head, f"{len(head)} {_describe_sep(sep)}-separated fields"
    )


# --------------------------------------------------------------------------------------------
# Column conversions
# --------------------------------------------------------------------------------------------


def _plain(values: Sequence[Any] | np.ndarray) -> Sequence[Any]:
    """Python values (not NumPy scalars), so that error messages show them plainly."""
    return values.tolist() if isinstance(values, np.ndarray) else values


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def to_floats(
    values: Sequence[Any] | np.ndarray,
    rows: Rows,
    column: str,
    *,
    expected: str = "a number",
    allow_missing: bool = False,
) -> np.ndarray:
    """Values as finite ``float64``; a bad value raises :class:`DataError` naming its line.

    With ``allow_missing`` empty values become NaN instead of an error.
    """
    try:
        out = np.asarray(values, dtype=np.float64)
        ok = bool(np.isfinite(out).all())
    except (ValueError, TypeError):
        ok = False
    if ok:
        return out
    out = np.empty(len(values), dtype=np.float64)
    for row, value in enumerate(_plain(values)):
        if _is_missing(value):
            if allow_missing:
                out[row] = np.nan
                continue
            raise rows.error(row, f"expected {expected}, got an empty value", column)
        try:
            number = float(value)
        except (ValueError, TypeError):
            number = math.nan
        if not math.isfinite(number):
            raise rows.error(row, f"expected {expected}, got {value!r}", column)
        out[row] = number
    return out


def to_seconds(values: Sequence[Any] | np.ndarray, rows: Rows, column: str) -> np.ndarray:
    """Timestamps as float seconds.

    Numbers are taken as seconds; otherwise the column must hold ISO 8601 date-times (or be a
    datetime column, for Parquet); naive date-times are read as UTC. A bad value raises
    :class:`DataError` naming its line.
    """
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(getattr(values, "dtype", None)):
        stamps = pd.Series(pd.to_datetime(pd.Series(values), utc=True))
    else:
        try:
            numeric = not _is_missing(values[0]) and math.isfinite(float(values[0]))
        except (ValueError, TypeError):
            numeric = False
        if numeric:
            return to_floats(values, rows, column, expected="a number (seconds)")
        text = ["" if _is_missing(v) else str(v) for v in values]
        stamps = pd.to_datetime(
            pd.Series(text, dtype=object), format="ISO8601", utc=True, errors="coerce"
        )
    seconds = ((stamps - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(
        dtype=np.float64
    )
    bad = ~np.isfinite(seconds)
    if bad.any():
        row = int(np.argmax(bad))
        value = _plain(values)[row]
        raise rows.error(
            row, f"expected a number (seconds) or an ISO 8601 date-time, got {value!r}", column
        )
    return seconds


def to_ids(values: Sequence[Any] | np.ndarray, rows: Rows, column: str) -> list[str]:
    """Values as non-empty id strings (integral floats such as ``3.0`` become ``"3"``)."""
    out: list[str] = []
    for row, value in enumerate(_plain(values)):
        if _is_missing(value):
            raise rows.error(row, "empty id; expected a non-empty value", column)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        out.append(str(value).strip() if not isinstance(value, str) else value)
    return out


def unique_lookup(ids: Sequence[str], rows: Rows, column: str) -> dict[str, int]:
    """Map each id to its position; raises :class:`DataError` at the first repeated id."""
    lookup: dict[str, int] = {}
    for row, item_id in enumerate(ids):
        if item_id in lookup:
            first = lookup[item_id]
            where = f"row {first + 1}" if rows.lines is None else f"line {int(rows.lines[first])}"
            raise rows.error(row, f"duplicate item id {item_id!r} (first seen at {where})", column)
        lookup[item_id] = row
    return lookup


def index_items(
    ids: Sequence[str], lookup: dict[str, int], rows: Rows, column: str, item_source: Path
) -> np.ndarray:
    """Dense item ids for external ``ids``; an id missing from ``lookup`` raises :class:`DataError`
    naming the line that refers to it and the item file it is missing from."""
    dense = np.fromiter((lookup.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
    missing = dense < 0
    if missing.any():
        row = int(np.argmax(missing))
        raise rows.error(row, f"unknown item id {ids[row]!r}: it is not in {item_source}", column)
    return dense.astype(np.int32)


def first_appearance(ids: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Distinct ids in order of first appearance and the dense code of every value."""
    lookup: dict[str, int] = {}
    codes = np.fromiter(
        (lookup.setdefault(i, len(lookup)) for i in ids), dtype=np.int32, count=len(ids)
    )
    return list(lookup), codes


def encode_labels(values: Sequence[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Codes into the sorted distinct non-empty labels; empty labels get code ``-1``."""
    names = tuple(sorted({v for v in values if v}))
    index = {name: code for code, name in enumerate(names)}
    codes = np.fromiter((index.get(v, -1) for v in values), dtype=np.int32, count=len(values))
    return codes, names


def placeholder_catalog(ids: Sequence[str]) -> Catalog:
    """A catalog of bare items (text ``"item <id>"``, no category) for logs without item files."""
    return Catalog(
        ids=np.asarray(ids, dtype=str),
        text=np.asarray([f"item {i}" for i in ids], dtype=str),
        category=np.full(len(ids), -1, dtype=np.int32),
        category_names=(),
    )
