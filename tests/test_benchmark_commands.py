"""Every benchmark script answers ``--help``, and every flag that the README's command for it uses
is one that the script accepts (the benchmarks themselves run for minutes to hours, so they are
checked this way rather than run)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (REPO / "benchmarks").glob("*.py"))


def readme_flags() -> dict[str, set[str]]:
    """``{script file name: the --flags that the README's commands pass to it}``."""
    flags: dict[str, set[str]] = {}
    text = (REPO / "README.md").read_text()
    for script, rest in re.findall(r"python benchmarks/(\w+\.py)([^`\n]*)", text):
        words = shlex.split(rest.replace("<", "'<").replace(">", ">'"))
        flags.setdefault(script, set()).update(w for w in words if w.startswith("--"))
    return flags


FLAGS = readme_flags()


def test_the_readme_quotes_only_scripts_that_exist():
    assert FLAGS, "no benchmark command found in the README"
    assert set(FLAGS) <= set(SCRIPTS), sorted(set(FLAGS) - set(SCRIPTS))


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_answers_help_and_accepts_the_readme_flags(script: str):
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), "--help"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage:"), done.stdout[:500]
    missing = sorted(f for f in FLAGS.get(script, ()) if f not in done.stdout)
    assert not missing, f"the README passes {missing} to benchmarks/{script}, which lacks them"
