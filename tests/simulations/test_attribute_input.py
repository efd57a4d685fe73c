"""``fl.content_vectors=attributes``: a Hydra run's model gets the catalog's attributes as input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir

from fl.task import build_task_network
from ranking.data.attribute_vectors import attribute_vectors
from ranking.storage import save_dataset
from simulations.datasets.synthetic import generate_world
from simulations.federated import federated_settings

CONF = Path(__file__).resolve().parents[2] / "conf"


def test_attributes_become_a_content_vectors_file_the_network_takes(tmp_path):
    world = generate_world(n_items=70, n_users=20, seed=2)
    save_dataset(world.dataset, tmp_path / "data.npz")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["fl.content_vectors=attributes"])
    settings = federated_settings(cfg, tmp_path / "data.npz", tmp_path / "run")
    path = Path(settings.content_vectors)
    assert path.parent == tmp_path / "run"
    expected = attribute_vectors(world.dataset.catalog)
    assert np.array_equal(np.load(path), expected)
    network = build_task_network(settings, 70)
    assert network.item_emb.content_dim == expected.shape[1]
