"""What the ServerApp and the ClientApp share: the data, the model and its weights as arrays.

Both sides derive the same data deterministically from the settings: the dataset (a file written by
:func:`ranking.storage.save_dataset`, or the synthetic world generated from its seed), the held-out
users the server evaluates on, and the partition of the other users into clients.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from flwr.app import Array, ArrayRecord

from fl.partition import Partition, make_partition
from fl.settings import FederatedSettings
from ranking.data import Dataset, Interactions, Split, holdout_users
from ranking.errors import ConfigError
from ranking.evaluation import evaluate
from ranking.models import SequenceModel, build_model
from ranking.pipeline import NetworkScorer
from ranking.storage import load_dataset
from ranking.trainer import TrainConfig

EMBEDDING_KEYS = ("item_emb.ids.weight",)
"""State entries that are item-embedding tables (sent row-sparse)."""

State = dict[str, np.ndarray]


@dataclass(frozen=True, eq=False)
class TaskData:
    dataset: Dataset
    train: Interactions
    heldout: Split
    partition: Partition


def load_dataset_for(settings: FederatedSettings) -> Dataset:
    if settings.data_path:
        return load_dataset(settings.data_path)
    raise ConfigError(
        "no data-path given: write the dataset with ranking.storage.save_dataset and pass "
        "--run-config \"data-path='/path/to/dataset.npz'\" (the Hydra entry point does this for you)"
    )


@functools.lru_cache(maxsize=4)
def _task_data(settings: FederatedSettings) -> TaskData:
    dataset = load_dataset_for(settings)
    train, heldout = holdout_users(dataset.interactions, settings.heldout_fraction, seed=settings.seed)
    params: dict[str, object] = {}
    if settings.partition == "users_per_client":
        params["k"] = settings.users_per_client
    elif settings.partition == "dirichlet":
        params.update(alpha=settings.dirichlet_alpha, n_clients=settings.n_clients, categories=dataset.catalog.category)
    elif settings.partition == "by_time":
        params["n_clients"] = settings.n_clients
    partition = make_partition(settings.partition, train, seed=settings.seed, **params)
    return TaskData(dataset=dataset, train=train, heldout=heldout, partition=partition)


def data_settings(settings: FederatedSettings) -> FederatedSettings:
    """The settings that determine the data (so the cache is shared across rounds and strategies)."""
    base = FederatedSettings()
    return base.replace(
        data_path=settings.data_path, seed=settings.seed, heldout_fraction=settings.heldout_fraction,
        partition=settings.partition, users_per_client=settings.users_per_client, n_clients=settings.n_clients,
        dirichlet_alpha=settings.dirichlet_alpha,
    )  # fmt: skip


def task_data(settings: FederatedSettings) -> TaskData:
    """The run's data, loaded once per process."""
    return _task_data(data_settings(settings))


def build_network(settings: FederatedSettings, n_items: int) -> SequenceModel:
    """The session model of the run (seeded, so every process builds the same initial model)."""
    torch.manual_seed(settings.seed)
    kwargs: dict[str, object] = {"hidden": settings.hidden, "dropout": settings.dropout}
    if settings.model in ("sasrec", "longshort"):
        kwargs.update(max_len=settings.max_len, n_heads=settings.n_heads)
    if settings.model == "sasrec":
        kwargs["n_blocks"] = settings.n_blocks
    return build_model(settings.model, n_items, **kwargs)


def train_config(settings: FederatedSettings, seed: int) -> TrainConfig:
    return TrainConfig(
        epochs=settings.local_epochs, batch_size=settings.batch_size, lr=settings.lr, max_len=settings.max_len,
        loss=settings.loss, patience=0, progress=False, seed=seed,
    )  # fmt: skip


def to_array_record(arrays: State) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})


def from_array_record(record: ArrayRecord) -> State:
    return {k: v.numpy() for k, v in record.items()}


def get_state(model: torch.nn.Module) -> State:
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def set_state(model: torch.nn.Module, state: State) -> None:
    model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}, strict=True)


def state_scorer(settings: FederatedSettings, state: State) -> NetworkScorer:
    """A scorer for the model holding ``state`` (built once, for as many evaluations as needed)."""
    network = build_network(settings, task_data(settings).dataset.catalog.n_items)
    set_state(network, state)
    return NetworkScorer(network, settings.max_len)


def evaluate_state(settings: FederatedSettings, state: State, split: Split, stage: str = "test") -> dict[str, float]:
    """HR@10 / NDCG@10 (full ranking, seen filtered) of the model holding ``state``."""
    return evaluate(state_scorer(settings, state), split, stage, ks=(10,))
