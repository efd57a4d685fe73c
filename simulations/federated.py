"""``mode=federated``: a Flower simulation of the configured session model.

The dataset goes through the same cache as a central run; its cache file is what every simulated
client reads. Settings come from the ``fl/`` group (rounds, sampling, partition, strategy, update
encoding, faults) and the ``model/`` group (kind, network size, window, batch, loss).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fl.server_app import read_rounds
from fl.settings import FederatedSettings
from fl.task import task_data
from ranking.data.attribute_vectors import write_attribute_vectors
from ranking.errors import ConfigError
from ranking.evaluation import evaluate
from ranking.recommender import SequenceRecommender
from simulations.flower_sim import backend_from_cfg, simulate
from simulations.tracking import epoch_callback

log = logging.getLogger("tandem")


ATTRIBUTES = "attributes"
"""``fl.content_vectors=attributes``: the catalog's categorical attributes as the content input."""


def federated_settings(cfg: DictConfig, data_path: Path, run_dir: Path) -> FederatedSettings:
    """The federated settings of a Hydra run: the ``fl/`` group's round settings, its strategy spec
    and the ``model/`` group's spec, each carried whole (an unknown key is a :class:`ConfigError`).
    ``fl.content_vectors=attributes`` is replaced by the catalog's attribute vectors (a file in the
    run directory)."""
    if "kind" not in cfg.model:
        raise ConfigError(
            f"mode={cfg.mode} trains the L2 model federatedly and needs a sequence model "
            f"(model=sasrec|gru4rec|lstm|longshort), not {cfg.model.get('_target_', cfg.model)}"
        )
    fl_cfg: dict[str, Any] = OmegaConf.to_container(cfg.fl, resolve=True)  # type: ignore[assignment]
    strategy = fl_cfg.pop("strategy")
    fl_cfg.pop("compare_central", None)
    model = OmegaConf.to_container(cfg.model, resolve=True)
    if fl_cfg.get("content_vectors") == ATTRIBUTES:
        path = Path(run_dir) / "attribute_vectors.npy"  # read by every simulated client
        write_attribute_vectors(data_path, path)
        fl_cfg["content_vectors"] = str(path)
    return FederatedSettings.create(
        model=model,
        strategy=strategy,
        **fl_cfg,
        seed=int(cfg.seed),
        data_path=str(data_path),
        run_dir=str(run_dir),
    )


def central_reference(settings: FederatedSettings) -> dict[str, Any]:
    """The same model spec trained centrally on the same (non-held-out) users, evaluated the same way."""
    data = task_data(settings)
    model = SequenceRecommender.from_spec(settings.model.with_train(progress=False))
    model.fit(data.train, validation=data.heldout, callback=epoch_callback("l2_central"))
    result = evaluate(model, data.heldout, "test", ks=(10,))
    return {
        "round": "central",
        "hr@10": result["hr@10"],
        "ndcg@10": result["ndcg@10"],
        "best_epoch": model.best_epoch,
    }


def run_federated(cfg: DictConfig, data_path: Path, output_dir: Path) -> list[dict[str, Any]]:
    """Run the simulation; returns the per-round rows (plus a central row when asked)."""
    run_dir = output_dir / "fl"
    settings = federated_settings(cfg, data_path, run_dir)
    n_clients = task_data(settings).partition.n_clients
    log.info(
        "federated: %d clients, %d rounds, strategy %s",
        n_clients,
        settings.num_rounds,
        settings.strategy.name,
    )
    simulate(settings, num_supernodes=n_clients, backend=backend_from_cfg(cfg))
    rows = read_rounds(run_dir)
    if not rows:
        raise ConfigError(f"the simulation wrote no rounds to {run_dir}")
    if cfg.fl.get("compare_central"):
        rows.append(central_reference(settings))
    return rows
