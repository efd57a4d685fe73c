"""Documented examples, found where a user reads them: the README's fenced code blocks (by a marker)
and the command lines of the README and of module docstrings, for the tests that run them in a tiny
form."""

from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def fenced_block(language: str, marker: str, path: Path = README) -> str:
    """The one ```` ```language ```` block of ``path`` that contains ``marker`` (fails otherwise)."""
    blocks = re.findall(rf"^```{re.escape(language)}\n(.*?)^```", path.read_text(), re.M | re.S)
    found = [block for block in blocks if marker in block]
    if len(found) != 1:
        pytest.fail(
            f"{path.name}: expected one ```{language} block containing {marker!r}, "
            f"found {len(found)}; the test runs that block as documented"
        )
    return found[0]


def substituted(block: str, replacements: Mapping[str, str]) -> str:
    """``block`` with each key replaced by its value, in order; each key must occur exactly once."""
    for old, new in replacements.items():
        count = block.count(old)
        if count != 1:
            pytest.fail(
                f"the documented block holds {old!r} {count} times, expected once "
                f"(the test substitutes a tiny value for it):\n{block}"
            )
        block = block.replace(old, new)
    return block


def documented_text(source: Path) -> str:
    """The README, or a module's docstring (where a module documents its command lines), with
    backslash-continued lines joined."""
    text = source.read_text()
    if source.suffix == ".py":
        text = ast.get_docstring(ast.parse(text)) or ""
    return text.replace("\\\n", " ")


def command_lines(program: str, sources: Sequence[Path]) -> list[list[str]]:
    """The arguments of every documented ``program`` command line in ``sources``, each distinct one
    once; optional parts written ``[--flag VALUE]`` are kept, without their brackets."""
    found: dict[tuple[str, ...], list[str]] = {}
    for source in sources:
        pattern = rf"{re.escape(program)}((?: +[^\s`#]+)*)"
        for line in re.findall(pattern, documented_text(source)):
            args = shlex.split(line.replace("[", "").replace("]", ""))
            if args:
                found.setdefault(tuple(args), args)
    return list(found.values())


def with_values(args: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """``args`` with the value after each ``--flag`` of ``values`` replaced by ``values[flag]``."""
    out = list(args)
    for i, arg in enumerate(out[:-1]):
        if arg in values:
            out[i + 1] = values[arg]
    return out
