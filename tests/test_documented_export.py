"""The README's export snippet and every documented ``python -m fl.device_export`` command (README
and the module's docstring) run as written, on the ``best_model`` checkpoint that one round of the
real ServerApp round loop wrote.

The round runs in process (:mod:`in_process_grid`: the real ``run_rounds`` and ClientApp, no Ray),
which writes the same ``fl/best_model`` as a ``make simulate`` run in a few seconds.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from builders import world_settings
from documented_examples import README, REPO, command_lines, fenced_block, substituted, with_values
from in_process_grid import InProcessGrid, server_identity

from fl.client_app import make_client_app
from fl.device_export import main as device_export_main
from fl.device_model import DeviceRecommender
from fl.server_app import BEST_MODEL, run_rounds
from fl.task import task_data
from ranking.data.sequences import PAD
from ranking.recommender import load_recommender
from ranking.storage import load_dataset

EXPORT_MARKER = "from ranking.export import export_checkpoint"
"""The README's export snippet is the one python block holding this."""
DEVICE_EXPORT = "python -m fl.device_export"
DEVICE_EXPORT_SOURCES = [README, REPO / "fl" / "device_export.py"]


@pytest.fixture(scope="module")
def server_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the server's ``best_model`` checkpoint, the run's dataset file); the model keeps the
    default window (``max_len`` 50), which the snippet pads to."""
    root = tmp_path_factory.mktemp("server-run")
    settings = world_settings(
        root,
        n_items=80,
        n_users=48,
        seed=0,
        run_dir=str(root / "fl"),
        num_rounds=1,
        fraction_train=1.0,
        partition="users_per_client",
        users_per_client=12,
        heldout_fraction=0.3,
        model={"kind": "sasrec", "model": {"hidden": 16, "n_blocks": 1}},
    )
    n_clients = task_data(settings).partition.n_clients
    with server_identity():
        run_rounds(InProcessGrid(make_client_app(settings), n_nodes=n_clients), settings)
    checkpoint = root / "fl" / BEST_MODEL
    assert (checkpoint / "manifest.json").exists()
    return checkpoint, Path(settings.data_path)


def test_the_readme_export_snippet_scores_like_the_server_checkpoint(
    server_run, tmp_path, monkeypatch
):
    checkpoint, _ = server_run
    snippet = fenced_block("python", EXPORT_MARKER)
    placeholder = re.search(r'"runs/[^"]*/fl/best_model"', snippet)
    assert placeholder, f"the export snippet names no run's fl/best_model:\n{snippet}"
    code = substituted(snippet, {placeholder.group(0): repr(str(checkpoint))})
    monkeypatch.chdir(tmp_path)  # the snippet writes model.onnx into the working directory
    namespace: dict = {}
    exec(compile(code, f"{README} (export snippet)", "exec"), namespace)

    assert (tmp_path / "model.onnx").exists()
    scores, item_ids = namespace["scores"], namespace["item_ids"]
    row = namespace["batch"][0]
    session = row[row != PAD] - 1  # back to the 0-based ids the snippet padded
    want = load_recommender(checkpoint).score([session], np.array([0]))[0]
    assert item_ids.shape == (1, 10)
    np.testing.assert_allclose(scores[0], want[item_ids[0]], atol=1e-4, rtol=0)
    np.testing.assert_allclose(scores[0, 0], want.max(), atol=1e-4, rtol=0)


DEVICE_EXPORT_COMMANDS = command_lines(DEVICE_EXPORT, DEVICE_EXPORT_SOURCES)


def test_the_device_export_commands_were_found():
    assert len(DEVICE_EXPORT_COMMANDS) >= 2, DEVICE_EXPORT_COMMANDS  # the README's, the docstring's
    for args in DEVICE_EXPORT_COMMANDS:
        assert {"--checkpoint", "--dataset", "--out"} <= set(args), args


def test_documented_device_export_commands_run_on_the_server_checkpoint(server_run, tmp_path):
    checkpoint, data = server_run
    tiny = {"--checkpoint": str(checkpoint), "--dataset": str(data), "--out": "<out>"}
    distinct = dict.fromkeys(tuple(with_values(a, tiny)) for a in DEVICE_EXPORT_COMMANDS)
    item_ids = [str(i) for i in load_dataset(data).catalog.ids]
    for i, args in enumerate(distinct):
        out = tmp_path / f"device_model_{i}"
        # in process: the module's ``main`` is what ``python -m fl.device_export`` runs
        assert device_export_main(with_values(args, {"--out": str(out)})) == 0, args
        top = DeviceRecommender(out, precision="fp32").recommend(item_ids[:3], k=5)
        assert len(top) == 5 and {item for item, _ in top} <= set(item_ids)
