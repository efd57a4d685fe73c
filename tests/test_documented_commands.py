"""Every ``make simulate`` / ``tandem-simulate`` example in the README, the entry point's docstring
and the root config runs, in a tiny form (tiny world, one round or epoch), and exits cleanly; so does
every documented ``tandem-report`` command, on each documented sweep. The ``tandem-serve`` examples
are checked, not run (see their test).

Examples on data that tests may not need (ML-100K lives outside the repository) are composed and
checked, not run. The export snippet and ``python -m fl.device_export`` are run by
``test_documented_export.py``, ``flwr run .`` by ``fl/test_flwr_run.py``.
"""

from __future__ import annotations

import itertools
import operator
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from documented_examples import command_lines, with_values
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from serving.config import DEFAULT_CONFIG as SERVING_CONFIG
from serving.config import load_service_config
from simulations.report_cli import main as report_main
from simulations.run import run
from tests.simulations.sweep_report_checks import assert_reranker_sweep_report

REPO = Path(__file__).resolve().parents[1]
CONF = str(REPO / "conf")
SOURCES = [REPO / "README.md", REPO / "simulations" / "run.py", REPO / "conf" / "config.yaml"]
REPORT_SOURCES = [REPO / "README.md", REPO / "simulations" / "report_cli.py"]
SERVE_SOURCES = [REPO / "README.md", REPO / "serving" / "cli.py", SERVING_CONFIG]
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


def shortened_sweep(sweep: list[str], *, one_value_after_first: bool = False) -> list[str]:
    """Each swept key keeps :data:`SWEPT_VALUES` values; with ``one_value_after_first`` (sweeps of
    the whole pipeline, the expensive ones) every key after the first keeps its first value, so a
    pipeline sweep over strategies x seeds runs two jobs. Every job of the full product is
    composed by the test all the same."""
    out, swept = [], 0
    for arg in sweep:
        if "," in arg:
            key, values = arg.split("=", 1)
            keep = 1 if swept and one_value_after_first else SWEPT_VALUES
            arg = f"{key}={','.join(values.split(',')[:keep])}"
            swept += 1
        out.append(arg)
    return out


def sweep_jobs(sweep: list[str]) -> list[list[str]]:
    """The overrides of every job of a ``-m`` sweep (the product of its comma lists)."""
    options = [
        [f"{a.split('=', 1)[0]}={v}" for v in a.split("=", 1)[1].split(",")] if "," in a else [a]
        for a in sweep
        if a != "-m"
    ]
    return [list(job) for job in itertools.product(*options)]


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
    for job in sweep_jobs(sweep):  # every job of the documented sweep composes
        cfg = composed(job)
        assert cfg.dataset and cfg.model
    if any(a in NEEDS_SHARED_DATA for a in sweep):  # running it needs shared data
        return
    fixed = [a for a in sweep if a != "-m" and "," not in a]
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        documented = compose(config_name="config", overrides=fixed, return_hydra_config=True)
    sweep = shortened_sweep(sweep, one_value_after_first=documented.mode == "pipeline")
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
    report_documented_sweep(tmp_path / "sweep", tmp_path)
    if "experiment=rerankers" in sweep and [a for a in sweep if "," in a] == ["seed=0,1"]:
        assert_reranker_sweep_report(tmp_path / "sweep", tmp_path / "checked-report")


# ---- tandem-report and tandem-serve ------------------------------------------------------------

REPORT_COMMANDS = command_lines("tandem-report", REPORT_SOURCES)
SERVE_COMMANDS = command_lines("tandem-serve", SERVE_SOURCES)


def test_the_report_and_serve_examples_were_found():
    assert len(REPORT_COMMANDS) >= 2 and any("--out" in c for c in REPORT_COMMANDS), REPORT_COMMANDS
    assert len(SERVE_COMMANDS) >= 3, SERVE_COMMANDS
    assert any("--config" in c for c in SERVE_COMMANDS) and any(
        "=" in a for c in SERVE_COMMANDS for a in c
    )


def report_documented_sweep(sweep_dir: Path, tmp_path: Path) -> None:
    """Every documented ``tandem-report`` command, in process (its console script calls
    :func:`simulations.report_cli.main`), on a sweep that a test has just run."""
    for i, args in enumerate(REPORT_COMMANDS):
        out = tmp_path / f"report-{i}"
        assert not args[0].startswith("-"), args  # the sweep directory comes first
        tiny = with_values([str(sweep_dir), *args[1:]], {"--out": str(out)})
        assert report_main(tiny) == 0, tiny
        written = out if "--out" in args else sweep_dir
        assert (written / "report.md").read_text().strip(), tiny


def serve_overrides(args: list[str]) -> list[str]:
    return [a for a in args if "=" in a and not a.startswith("-")]


def test_documented_serve_commands_use_its_flags_and_compose_their_settings(tmp_path):
    """Not run: the service needs a bundle (a whole pipeline run), serves until it is stopped,
    and one example needs a Redis server; ``tests/serving/test_service.py`` runs the real
    ``tandem-serve`` on a bundle. Here every documented flag is one that ``tandem-serve --help``
    lists, and every documented ``key=value`` setting composes, with ``--config`` given a copy
    of the default settings, into the value it names."""
    script = Path(sys.executable).parent / "tandem-serve"
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("usage:"), done.stderr[-2000:]
    config_copy = tmp_path / "serving.yaml"
    shutil.copy(SERVING_CONFIG, config_copy)
    for args in SERVE_COMMANDS:
        flags = [a for a in args if a.startswith("--")]
        assert all(f in done.stdout for f in flags), f"{flags} not all in --help of tandem-serve"
        config_path = config_copy if "--config" in args else None
        config = load_service_config(config_path, serve_overrides(args))
        for key, value in (o.split("=", 1) for o in serve_overrides(args)):
            assert str(operator.attrgetter(key)(config)) == value, (key, args)
