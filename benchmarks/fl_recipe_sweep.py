"""In-process search for a federated recipe: many settings, each cheap, on one machine.

The federated benchmark (``benchmarks/fl_vs_central.py``) runs every setting through Flower's
Simulation Runtime; a search over a dozen recipes that way costs hours. This sweep runs the same
client and server math in one process per recipe, without Flower:

* clients: :func:`fl.local_training.train_locally` (the ClientApp's own local training), then the
  ClientApp's own update encoding (:func:`fl.client_app.rows_to_send`,
  :func:`fl.compression.encode_update` / ``decode_update``);
* aggregation: :func:`fl.row_sparse_aggregation.aggregate_row_sparse` (weighted by training
  targets, as the ServerApp does);
* server optimiser: the formulas of Flower's ``FedAdam`` (bias-corrected step, as in
  ``flwr.serverapp.strategy.FedAdam``), ``FedAvg`` and ``FedAvgM``, restated in NumPy below;
* client sampling: ``fraction-train`` of the clients, drawn by (seed, round).

It is a search tool: the recipe it finds is then measured through Flower with
``benchmarks/fl_vs_central.py``, which gives the README's figures. Each recipe prints its held-out
test NDCG@10 every ``--eval-every`` rounds.

    .venv/bin/python benchmarks/fl_recipe_sweep.py --dataset ml-100k --rounds 150 --jobs 2

Writes ``benchmarks/results/fl_recipe_sweep.json`` (one row per dataset x recipe x round
evaluated; rows of other runs already there are kept).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from fl.client_app import rows_to_send  # noqa: E402
from fl.compression import decode_update, encode_update  # noqa: E402
from fl.local_training import train_locally  # noqa: E402
from fl.row_sparse_aggregation import aggregate_row_sparse  # noqa: E402
from fl.server_app import evaluate_round  # noqa: E402
from fl.settings import FederatedSettings  # noqa: E402
from fl.task import EMBEDDING_KEYS, State, build_task_network, get_state, task_data  # noqa: E402
from simulations.report import print_table, write_results  # noqa: E402

MACHINE = f"{platform.machine()}, {os.cpu_count()} cores"

BASE: dict[str, Any] = {
    "partition": "one_user_per_client",
    "update_encoding": "row-sparse",
    "quantize": "int8",
    "strategy": {"name": "fedadam", "eta": 0.003},
}
"""The recipe of the synthetic world (README, "Federated vs central") that every recipe changes."""

RECIPES: dict[str, dict[str, Any]] = {
    "fedadam eta 3e-3, SGD E=1": {},
    "fedadam eta 1e-3, SGD E=1": {"strategy": {"name": "fedadam", "eta": 0.001}},
    "fedadam eta 5e-3, SGD E=1": {"strategy": {"name": "fedadam", "eta": 0.005}},
    "fedadam eta 1e-2, SGD E=1": {"strategy": {"name": "fedadam", "eta": 0.01}},
    "fedadam eta 3e-3, SGD E=1, dense fp32": {"update_encoding": "dense", "quantize": "none"},
    "fedadam eta 3e-3, SGD E=1, row-sparse fp32": {"quantize": "none"},
    "fedadam eta 3e-3, SGD E=1, row-sparse rows over all": {"sparse_row_average": "all"},
    "fedadam eta 3e-3, SGD E=1, row-sparse +800 rows": {"sparse_extra_rows": 800},
    "fedadam eta 3e-3, SGD E=1, dense int8": {"update_encoding": "dense"},
    "fedadam eta 3e-3, SGD 1 window/step": {"local_batch_size": 1},
    "fedadam eta 3e-3, SGD 1 window/step, dense int8": {
        "local_batch_size": 1,
        "update_encoding": "dense",
    },
    "fedadam eta 5e-3, SGD E=1, dense int8": {
        "strategy": {"name": "fedadam", "eta": 0.005},
        "update_encoding": "dense",
    },
    "fedavg, Adam lr 1e-3 E=5": {
        "strategy": {"name": "fedavg"},
        "client_optimizer": "adam",
        "lr": 1e-3,
        "local_epochs": 5,
    },
    "fedadam eta 3e-3, Adam lr 1e-3 E=3": {
        "client_optimizer": "adam",
        "lr": 1e-3,
        "local_epochs": 3,
    },
}
"""Recipes by name: overrides of :data:`BASE` (``fl.*`` settings)."""


class ServerOptimizer:
    """The server step of Flower's FedAdam / FedAvg / FedAvgM on an averaged client state."""

    def __init__(self, settings: FederatedSettings) -> None:
        self.name = settings.strategy.name
        self.s = settings.strategy.settings
        if self.name not in ("fedadam", "fedavg", "fedavgm"):
            raise ValueError(f"the sweep supports fedadam, fedavg and fedavgm, not {self.name!r}")
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}

    def step(self, state: State, averaged: State, round_: int) -> State:
        if self.name == "fedavg":
            return averaged
        out: State = {}
        for key, x in state.items():
            if not np.issubdtype(x.dtype, np.floating):
                out[key] = averaged[key]
                continue
            delta = averaged[key].astype(np.float64) - x
            if self.name == "fedavgm":  # Flower: momentum on (current - aggregate)
                m = self.s.server_momentum * self.m.get(key, 0.0) - delta
                self.m[key] = m
                out[key] = (x - self.s.server_lr * m).astype(x.dtype)
                continue
            m = self.s.beta_1 * self.m.get(key, 0.0) + (1 - self.s.beta_1) * delta
            v = self.s.beta_2 * self.v.get(key, 0.0) + (1 - self.s.beta_2) * delta**2
            self.m[key], self.v[key] = m, v
            eta = (
                self.s.eta
                * np.sqrt(1 - self.s.beta_2 ** (round_ + 1.0))
                / (1 - self.s.beta_1 ** (round_ + 1.0))
            )
            out[key] = (x + eta * m / (np.sqrt(v) + self.s.tau)).astype(x.dtype)
        return out


def settings_for(
    recipe: str, data_path: str, rounds: int, fraction: float, seed: int
) -> FederatedSettings:
    overrides = {**BASE, **RECIPES[recipe]}
    return FederatedSettings.create(
        data_path=data_path, num_rounds=rounds, fraction_train=fraction, seed=seed, **overrides
    )


def client_update(
    settings: FederatedSettings, network: Any, state: State, pid: int, round_: int
) -> tuple[tuple[State, dict[str, np.ndarray]], float] | None:
    data = task_data(settings)
    sequences = data.partition.client_interactions(data.train, pid).sequences()
    result = train_locally(settings, network, state, sequences, round_, pid)
    if not result["n_targets"]:
        return None
    new_state = get_state(network)
    keys: tuple[str, ...] = ()
    touched = np.empty(0, dtype=np.int64)
    if settings.update_encoding == "row-sparse":
        keys = EMBEDDING_KEYS
        touched = rows_to_send(settings, sequences, new_state, state)
    payload = encode_update(new_state, keys, touched, settings.quantize, state)
    return decode_update(payload, state), float(result["n_targets"])


def run_recipe(job: tuple[str, str, str, int, float, int, int]) -> list[dict[str, Any]]:
    recipe, dataset, data_path, rounds, fraction, eval_every, seed = job
    torch.set_num_threads(1)
    settings = settings_for(recipe, data_path, rounds, fraction, seed)
    data = task_data(settings)
    n_clients = data.partition.n_clients
    network = build_task_network(settings, data.dataset.catalog.n_items)
    state = get_state(network)
    server = ServerOptimizer(settings)
    per_round = max(settings.min_train_nodes, round(fraction * n_clients))
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    updates_done = 0
    for round_ in range(1, rounds + 1):
        pids = np.sort(np.random.default_rng([seed, round_]).choice(n_clients, per_round, False))
        updates = [
            u for pid in pids if (u := client_update(settings, network, state, int(pid), round_))
        ]
        updates_done += len(updates)
        averaged = aggregate_row_sparse(state, updates, settings.sparse_row_average)
        state = server.step(state, averaged, round_)
        if round_ % eval_every == 0 or round_ == rounds:
            metrics = evaluate_round(settings, state, data.heldout)
            row = {
                "dataset": dataset,
                "method": recipe,
                "setting": f"{fraction:.0%} of {n_clients} clients a round, seed {seed}, in-process",
                "round": round_,
                **metrics,
                "updates_per_s": updates_done / (time.perf_counter() - start),
                "machine": MACHINE,
            }
            rows.append(row)
            print(
                f"{recipe:45s} round {round_:4d}  ndcg@10 {metrics['ndcg@10']:.4f}  "
                f"val {metrics['val_ndcg@10']:.4f}",
                flush=True,
            )
    return rows


def main() -> None:
    from benchmarks.fl_vs_central import dataset_file

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--recipes", nargs="*", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--rounds", type=int, default=150)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--jobs", type=int, default=2, help="recipes run in parallel (1 thread each)"
    )
    args = parser.parse_args()
    data_path = str(dataset_file(args.dataset, Path(tempfile.mkdtemp(prefix="fl-sweep-"))))
    jobs = [
        (r, args.dataset, data_path, args.rounds, args.fraction, args.eval_every, args.seed)
        for r in args.recipes
    ]
    out = ROOT / "benchmarks" / "results" / "fl_recipe_sweep.json"
    rows: list[dict[str, Any]] = []
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        for result in pool.imap_unordered(run_recipe, jobs):  # saved as each recipe ends
            rows.extend(result)
            write_results(out, result, key=("dataset", "method", "setting", "round"))
    print_table(
        f"Federated recipes, in-process ({args.dataset}, held-out users, leave-one-out test)",
        rows,
        ["method", "round", "ndcg@10", "val_ndcg@10", "updates_per_s"],
    )
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
