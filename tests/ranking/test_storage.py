"""Atomic writes and the dataset file format."""

import numpy as np
import pytest

from ranking.errors import DataError
from ranking.storage import atomic_write_with, config_key, load_dataset, save_dataset
from simulations.datasets.synthetic import generate_world


def test_config_key_ignores_dict_order_and_sees_values():
    assert config_key({"a": 1, "b": [1, 2]}) == config_key({"b": [1, 2], "a": 1})
    assert config_key({"a": 1}) != config_key({"a": 2})


def test_dataset_round_trip_keeps_every_column_and_images(tmp_path):
    ds = generate_world(n_items=50, n_users=20).dataset
    path = tmp_path / "d.npz"
    save_dataset(ds, path)
    back = load_dataset(path)
    a, b = ds.interactions, back.interactions
    for col in ("user", "item", "timestamp", "session", "event", "user_ids"):
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col))
    assert b.event_names == a.event_names
    np.testing.assert_array_equal(back.catalog.text, ds.catalog.text)
    np.testing.assert_array_equal(
        back.catalog.attributes["colour"], ds.catalog.attributes["colour"]
    )
    np.testing.assert_array_equal(
        np.asarray(back.catalog.image(3)), np.asarray(ds.catalog.image(3))
    )


def test_failed_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out.bin"

    def broken(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write_with(target, broken)
    assert list(tmp_path.iterdir()) == []


def test_corrupt_dataset_file_gives_data_error(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="bad.npz"):
        load_dataset(bad)


def test_a_device_loads_a_dataset_without_unpickling_its_image_renderer(tmp_path):
    """The client install lacks the packages the synthetic world's image renderer needs."""
    import subprocess
    import sys

    ds = generate_world(n_items=50, n_users=20).dataset
    assert ds.catalog.image_renderer is not None
    path = tmp_path / "d.npz"
    save_dataset(ds, path)
    back = load_dataset(path, images=False)
    assert back.catalog.image_renderer is None
    np.testing.assert_array_equal(back.interactions.item, ds.interactions.item)
    # in a fresh interpreter: loading without images imports nothing of simulations/ (nor Hydra)
    code = (
        "import sys; from ranking.storage import load_dataset; "
        f"load_dataset({str(path)!r}, images=False); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('simulations', 'hydra')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
