"""What the ServerApp and the ClientApp share: the data, the model and its weights as arrays.

Both sides derive the same data deterministically from the settings: the dataset (a file written by
:func:`ranking.storage.save_dataset`, or the synthetic world generated from its seed), the held-out
users the server evaluates on, and the partition of the other users into clients.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord

from fl.array_codec import array_nbytes, to_array, to_numpy
from fl.partition import Partition, make_partition
from fl.settings import FederatedSettings
from ranking.data import Dataset, Interactions, Split, holdout_users
from ranking.errors import ConfigError
from ranking.evaluation import evaluate
from ranking.models import SequenceModel
from ranking.recommender import SequenceRecommender
from ranking.spec import build_network
from ranking.storage import load_dataset
from ranking.train_config import TrainConfig

EMBEDDING_KEYS = ("item_emb.ids.weight",)
"""State entries that are item-embedding tables (sent row-sparse)."""

State = dict[str, np.ndarray]


@dataclass(frozen=True, eq=False)
class TaskData:
    dataset: Dataset
    train: Interactions
    heldout: Split
    partition: Partition


def load_dataset_for(data_path: str) -> Dataset:
    if data_path:
        return load_dataset(data_path)
    raise ConfigError(
        "no data-path given: write the dataset with ranking.storage.save_dataset and pass "
        "--run-config \"data-path='/path/to/dataset.npz'\" (the Hydra entry point does this for you)"
    )


def task_data(settings: FederatedSettings) -> TaskData:
    """The run's data, loaded once per process (cached by the settings that determine it)."""
    return _task_data(
        settings.data_path,
        settings.seed,
        settings.heldout_fraction,
        settings.partition,
        settings.users_per_client,
        settings.n_clients,
        settings.dirichlet_alpha,
    )


@functools.lru_cache(maxsize=4)
def _task_data(
    data_path: str,
    seed: int,
    heldout_fraction: float,
    partition_name: str,
    users_per_client: int,
    n_clients: int,
    dirichlet_alpha: float,
) -> TaskData:
    dataset = load_dataset_for(data_path)
    train, heldout = holdout_users(dataset.interactions, heldout_fraction, seed=seed)
    params: dict[str, object] = {}
    if partition_name == "users_per_client":
        params["k"] = users_per_client
    elif partition_name == "dirichlet":
        params.update(
            alpha=dirichlet_alpha, n_clients=n_clients, categories=dataset.catalog.category
        )
    elif partition_name == "by_time":
        params["n_clients"] = n_clients
    partition = make_partition(partition_name, train, seed=seed, **params)
    return TaskData(dataset=dataset, train=train, heldout=heldout, partition=partition)


def build_task_network(settings: FederatedSettings, n_items: int) -> SequenceModel:
    """The session model of the run, from its model spec and content vectors (every process
    builds the same one)."""
    return build_network(settings.model, n_items, task_content(settings, n_items))


def task_content(settings: FederatedSettings, n_items: int) -> torch.Tensor | None:
    """The model's frozen content input (``fl.content_vectors``), read once per process."""
    if not settings.content_vectors:
        return None
    return _content(settings.content_vectors, n_items)


@functools.lru_cache(maxsize=2)
def _content(path: str, n_items: int) -> torch.Tensor:
    from fl.item_table import load_content_vectors

    vectors = load_content_vectors(Path(path), n_items, setting="fl.content_vectors")
    return torch.as_tensor(vectors, dtype=torch.float32)


_reusable = threading.local()


def reusable_task_network(settings: FederatedSettings, n_items: int) -> SequenceModel:
    """The run's session model, built once per thread and model spec and then reused.

    For a process that trains round after round (a simulation's Ray actor): building SASRec costs
    about an eighth of a client's round. Every caller loads a full state into it first
    (:func:`set_state` is strict, so no weight of an earlier round survives).
    """
    key = (repr(settings.model), n_items, settings.content_vectors)
    cache: dict[tuple[str, int, str], SequenceModel] = _reusable.__dict__.setdefault("networks", {})
    if key not in cache:
        cache.clear()  # one run's model at a time
        cache[key] = build_task_network(settings, n_items)
    return cache[key]


def local_train_config(settings: FederatedSettings, seed: int) -> TrainConfig:
    """The model spec's training config for one client round: ``local-epochs`` epochs at the
    client ``lr``, no early stopping, no progress bar; everything else as the spec says."""
    return settings.model.train.replace(
        epochs=settings.local_epochs, lr=settings.lr, patience=0, progress=False, seed=seed
    )


def to_array_record(arrays: State) -> ArrayRecord:
    return ArrayRecord({k: to_array(v) for k, v in arrays.items()})


def from_array_record(record: ArrayRecord) -> State:
    return {k: to_numpy(v) for k, v in record.items()}


def record_nbytes(record: ArrayRecord) -> int:
    """Bytes of the values in ``record`` (what :func:`fl.payload_format.payload_bytes` gives for
    the decoded payload), read from the arrays' fields without decoding them."""
    return sum(array_nbytes(a) for a in record.values())


def get_state(model: torch.nn.Module) -> State:
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def set_state(model: torch.nn.Module, state: State) -> None:
    model.load_state_dict(
        {k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}, strict=True
    )


def state_scorer(settings: FederatedSettings, state: State) -> SequenceRecommender:
    """A recommender holding ``state`` (built once, for as many evaluations as needed)."""
    n_items = task_data(settings).dataset.catalog.n_items
    rec = SequenceRecommender.from_spec(
        settings.model, n_items=n_items, content=task_content(settings, n_items)
    )
    set_state(rec.network, state)
    return rec


def evaluate_state(
    settings: FederatedSettings, state: State, split: Split, stage: str = "test"
) -> dict[str, float]:
    """HR@10 / NDCG@10 (full ranking, seen filtered) of the model holding ``state``."""
    return evaluate(state_scorer(settings, state), split, stage, ks=(10,))
