"""The device model: exported with a manifest, read with onnxruntime alone, refused when wrong."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from builders import rule_log

from fl.device_export import export_device_model
from fl.device_model import DeviceRecommender
from ranking.errors import DataError
from ranking.manifest import write_manifest
from ranking.recommender import SequenceRecommender

N_ITEMS = 40
IDS = [f"sku-{i}" for i in range(N_ITEMS)]
INT8_MEAN_TOPK_OVERLAP = 0.8  # the int8 bound of tests/ranking/test_export.py
HEAVY = ("torch", "faiss", "open_clip", "hydra", "wandb", "ray", "torchvision")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SequenceRecommender]:
    root = tmp_path_factory.mktemp("device")
    model = SequenceRecommender(
        "sasrec",
        model={"hidden": 16, "n_blocks": 1},
        train={"epochs": 30, "max_len": 12, "loss": "ce", "lr": 0.01, "progress": False},
    ).fit(rule_log(N_ITEMS, n_users=80))
    checkpoint = model.save(root / "best_model")
    return export_device_model(checkpoint, IDS, root / "device_model", top_k=10), model


def _torch_topk(model: SequenceRecommender, history: list[int]) -> list[int]:
    scores = model.score([np.array(history)], np.array([0]))[0]
    return np.argsort(-scores, kind="stable")[:10].tolist()


def test_onnx_on_the_device_gives_pytorchs_top_k(exported):
    path, model = exported
    fp32 = DeviceRecommender(path, precision="fp32")
    int8 = DeviceRecommender(path, precision="int8")
    overlaps = []
    for start in range(0, N_ITEMS, 3):
        history = [(start + t) % N_ITEMS for t in range(5)]
        want = _torch_topk(model, history)
        names = [IDS[i] for i in history]
        got32 = [IDS.index(item) for item, _ in fp32.recommend(names)]
        got8 = [IDS.index(item) for item, _ in int8.recommend(names)]
        assert got32[0] == want[0] and len(set(got32) & set(want)) >= 9  # ties aside
        overlaps.append(len(set(got8) & set(want)) / 10)
    assert np.mean(overlaps) >= INT8_MEAN_TOPK_OVERLAP
    assert fp32.recommend([IDS[5], IDS[6]], k=1)[0][0] == IDS[7]  # the rule it learned


def _rewrite(path: Path, edit) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    edit(path)
    write_manifest(
        path,
        format=manifest["format"],
        format_version=manifest["format_version"],
        spec=manifest["spec"],
        n_items=manifest["n_items"],
        meta=manifest["meta"],
    )


def test_a_corrupt_or_mismatched_model_is_refused(exported, tmp_path):
    import shutil

    path, _ = exported
    corrupt = shutil.copytree(path, tmp_path / "corrupt")
    data = bytearray((corrupt / "model.int8.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (corrupt / "model.int8.onnx").write_bytes(bytes(data))
    with pytest.raises(DataError, match="checksum mismatch for 'model.int8.onnx'"):
        DeviceRecommender(corrupt)
    version = DeviceRecommender(path).version
    with pytest.raises(DataError, match="expected 'v999'"):
        DeviceRecommender(path, expected_version="v999")
    assert DeviceRecommender(path, expected_version=version).version == version
    shorter = shutil.copytree(path, tmp_path / "shorter")
    _rewrite(shorter, lambda p: (p / "item_ids.json").write_text(json.dumps(IDS[:-1])))
    with pytest.raises(DataError, match="disagree"):
        DeviceRecommender(shorter)


def test_the_device_side_imports_no_torch_and_the_client_no_heavy_framework():
    probe = (
        "import sys, importlib; importlib.import_module(sys.argv[1]); "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    device = subprocess.run(
        [sys.executable, "-c", probe, "fl.device_model"], capture_output=True, text=True, check=True
    )
    assert device.stdout.strip() == ""
    client = subprocess.run(
        [sys.executable, "-c", probe, "fl.client_app"], capture_output=True, text=True, check=True
    )
    assert (
        client.stdout.strip() == "torch"
    )  # flwr, numpy, torch: none of faiss, CLIP, Hydra, W&B, Ray


def test_history_longer_than_the_window_and_unknown_items(exported):
    path, _ = exported
    device = DeviceRecommender(path, precision="fp32")
    long = [IDS[i % N_ITEMS] for i in range(100)]
    assert len(device.recommend(long)) == 10
    with pytest.raises(KeyError, match="not-an-item"):
        device.recommend(["not-an-item"])


def test_a_federated_run_exports_its_best_model_for_devices(tmp_path):
    from fl.server_app import DEVICE_MODEL, read_rounds
    from fl.settings import FederatedSettings
    from fl.task import task_data
    from ranking.storage import save_dataset
    from simulations.datasets.synthetic import generate_world
    from simulations.flower_sim import simulate

    world = generate_world(n_items=120, n_users=60, seed=3).dataset
    save_dataset(world, tmp_path / "data.npz")
    settings = FederatedSettings.create(
        data_path=str(tmp_path / "data.npz"),
        run_dir=str(tmp_path / "run"),
        num_rounds=1,
        fraction_train=1.0,
        partition="users_per_client",
        users_per_client=20,
        strategy={"name": "fedavg"},
        export_device_model=True,
        model={"kind": "sasrec", "model": {"hidden": 16, "n_blocks": 1}, "train": {"max_len": 10}},
    )
    simulate(settings, task_data(settings).partition.n_clients)
    assert [r["round"] for r in read_rounds(tmp_path / "run")] == [0, 1]
    device = DeviceRecommender(tmp_path / "run" / DEVICE_MODEL)
    items = [item for item, _ in device.recommend(list(world.catalog.ids[:3]))]
    assert len(items) == 10 and set(items) <= set(world.catalog.ids.tolist())
