"""Every ``make simulate`` / ``tandem-simulate`` example in the README, the entry point's docstring
and the root config runs, in a tiny form (tiny world, one round or epoch), and exits cleanly.

Examples on data that tests may not need (ML-100K lives outside the repository) are composed and
checked, not run.
"""

from __future__ import annotations

import itertools
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from simulations.run import run

REPO = Path(__file__).resolve().parents[1]
CONF = str(REPO / "conf")
SOURCES = [REPO / "README.md", REPO / "simulations" / "run.py", REPO / "conf" / "config.yaml"]
TINY = [
    "dataset.n_items=150",
    "dataset.n_users=120",
    "encoder.epochs=1",
    "pipeline.l1.epochs=1",
    "pipeline.latency_requests=5",
    "fl.num_rounds=1",
    "fl.partition=users_per_client",
    "fl.users_per_client=27",
    "fl.fraction_train=1.0",
    "fl.heldout_fraction=0.2",
    "train.epochs=1",
    "train.progress=false",
    "stream.max_events=200",
    "stream.window=50",
    "stream.initial_epochs=1",
    "stream.retrain_rounds=1",
    "stream.log_every=10",
]
NEEDS_SHARED_DATA = ("dataset=ml100k", "dataset=ml1m", "dataset=ml100k_raw")


def documented_commands() -> list[list[str]]:
    """The override lists of every documented example (``-m`` sweeps keep their ``-m``).

    ``hydra.sweep.dir`` only says where a sweep writes (the test sets its own), so two examples that
    differ in it alone are one command.
    """
    found: dict[tuple[str, ...], list[str]] = {}
    for source in SOURCES:
        text = source.read_text()
        lines = re.findall(r'make simulate ARGS="([^"]*)"', text)
        lines += re.findall(r"tandem-simulate((?: [^\s`#]+)*)", text)
        for line in lines:
            args = [a for a in shlex.split(line) if not a.startswith("hydra.sweep.dir=")]
            found.setdefault(tuple(args), args)
    return list(found.values())


SWEPT_VALUES = 2
"""A documented sweep runs in the test with the first two values of each swept key (and two trials of
an Optuna study): enough to show that every job of a multi-run is launched and written."""


def shortened_sweep(sweep: list[str]) -> list[str]:
    out = []
    for arg in sweep:
        if "," in arg:
            key, values = arg.split("=", 1)
            arg = f"{key}={','.join(values.split(',')[:SWEPT_VALUES])}"
        out.append(arg)
    return out


COMMANDS = documented_commands()


def test_the_examples_were_found():
    assert len(COMMANDS) >= 8
    assert any("-m" in c for c in COMMANDS), "the documented sweep"
    assert any(any(a.startswith("fl.dp_noise_multiplier") for a in c) for c in COMMANDS), (
        "the DP example"
    )


def composed(overrides: list[str]):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("args", [c for c in COMMANDS if "-m" not in c], ids=" ".join)
def test_documented_command_runs_in_a_tiny_form(args, tmp_path):
    if any(a in NEEDS_SHARED_DATA for a in args):
        cfg = composed(
            args
        )  # composes (names, types, ranges of the overrides) but needs shared data
        assert cfg.dataset and cfg.model
        return
    documented = composed(args)
    tiny = [
        t
        for t in TINY
        if OmegaConf.select(documented, t.split("=")[0], default="<absent>") != "<absent>"
    ]
    cfg = composed([*args, *tiny, f"paths.cache_dir={tmp_path / 'cache'}"])  # later overrides win
    rows = run(cfg, output_dir=tmp_path / "out")
    assert rows and (tmp_path / "out" / "metrics.json").exists()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("sweep", [c for c in COMMANDS if "-m" in c], ids=" ".join)
def test_documented_sweep_runs_every_job(sweep, tmp_path):
    if any(a in NEEDS_SHARED_DATA for a in sweep):  # composes every job, but needs shared data
        options = [
            [f"{a.split('=', 1)[0]}={v}" for v in a.split("=", 1)[1].split(",")]
            if "," in a
            else [a]
            for a in sweep
            if a != "-m"
        ]
        for job in itertools.product(*options):
            cfg = composed(list(job))
            assert cfg.dataset and cfg.model
        return
    sweep = shortened_sweep(sweep)
    fixed = [a for a in sweep if a != "-m" and "," not in a]
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        documented = compose(config_name="config", overrides=fixed, return_hydra_config=True)
    tiny = [
        t
        for t in TINY
        if OmegaConf.select(documented, t.split("=")[0], default="<absent>") != "<absent>"
    ]
    n_jobs = 1
    for arg in sweep:
        if "," in arg:
            n_jobs *= len(arg.split("=", 1)[1].split(","))
    if OmegaConf.select(
        documented, "hydra.sweeper.n_trials"
    ):  # an Optuna study: a few trials in a test
        tiny.append(f"hydra.sweeper.n_trials={SWEPT_VALUES}")
        n_jobs = SWEPT_VALUES
    cmd = [
        sys.executable,
        "-m",
        "simulations.run",
        *sweep,
        *tiny,
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=580, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted((tmp_path / "sweep").glob("*/metrics.json"))
    assert len(jobs) == n_jobs >= 2
