"""The one place that starts Flower's in-process Simulation Runtime (``run_simulation``).

``flwr.simulation.run_simulation`` is deprecated in favour of ``flwr run``; the Hydra entry point
still uses it because it runs the same ServerApp/ClientApp in this process with settings baked in,
which keeps sweeps simple. ``flwr run .`` (see the README) runs the very same apps.

The Ray backend comes from the ``simulation`` section of the config (:class:`SimulationBackend`):
CPUs and GPUs per client, the actor count on this machine, or the address of an existing Ray
cluster, whose nodes' resources then decide how many clients train at once. A sweep that outgrows
one machine runs on a cluster with ``simulation.ray_address=<head>:6379`` and no code change.
"""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fl.client_app import make_client_app
from fl.server_app import make_server_app
from fl.settings import FederatedSettings
from ranking.errors import ConfigError
from ranking.typed_config import dataclass_from_mapping


@dataclass(frozen=True)
class SimulationBackend:
    """Where simulated clients run.

    Attributes
    ----------
    num_cpus_per_client, num_gpus_per_client:
        Resources each client (Ray actor) takes.
    num_actors:
        Local Ray only: clients training at once (Ray gets ``num_actors * num_cpus_per_client``
        CPUs); ``None``: as many as this machine's cores allow.
    ray_address:
        Connect to this existing Ray cluster (``host:port`` of its head, or ``auto``) instead of
        starting Ray here; the cluster's resources decide the actor count.
    linear_dispatch:
        Hand messages to the workers with :mod:`simulations.vce_dispatch` (one pass over the
        stored messages per sweep) instead of Flower's per-node scan.
    send_app_once:
        Pickle the ClientApp for the Ray actors once per run (:mod:`simulations.vce_app_cache`)
        instead of once per message.
    """

    num_cpus_per_client: float = 1.0
    num_gpus_per_client: float = 0.0
    num_actors: int | None = None
    ray_address: str | None = None
    linear_dispatch: bool = True
    send_app_once: bool = True

    def __post_init__(self) -> None:
        if self.num_cpus_per_client <= 0 or self.num_gpus_per_client < 0:
            raise ConfigError(
                "simulation.num_cpus_per_client must be > 0 and simulation.num_gpus_per_client >= 0"
            )
        if self.num_actors is not None and self.num_actors < 1:
            raise ConfigError(f"simulation.num_actors must be >= 1 or null, got {self.num_actors}")
        if self.ray_address is not None and self.num_actors is not None:
            raise ConfigError(
                "simulation.num_actors applies to a local Ray only: with simulation.ray_address "
                "the cluster's resources decide the actor count"
            )

    @classmethod
    def from_mapping(cls, values: Any) -> SimulationBackend:
        return dataclass_from_mapping(cls, values, "simulation")

    def backend_config(self) -> dict[str, Any]:
        """Flower's ``backend_config`` for the Ray backend."""
        resources = {"num_cpus": self.num_cpus_per_client, "num_gpus": self.num_gpus_per_client}
        init: dict[str, Any] = {"logging_level": logging.ERROR}
        if self.ray_address is not None:
            init["address"] = self.ray_address
        else:
            actors = self.num_actors or max(
                1, int((os.cpu_count() or 1) / self.num_cpus_per_client)
            )
            init["num_cpus"] = max(1, int(round(actors * self.num_cpus_per_client)))
            init["include_dashboard"] = False
        return {"client_resources": resources, "init_args": init}


def backend_from_cfg(cfg: Any) -> SimulationBackend:
    """The ``simulation`` section of a Hydra config (defaults where it has none)."""
    from omegaconf import OmegaConf

    section = cfg.get("simulation")
    return SimulationBackend.from_mapping(
        OmegaConf.to_container(section, resolve=True) if section is not None else None
    )


def simulate(
    settings: FederatedSettings, num_supernodes: int, backend: SimulationBackend | None = None
) -> None:
    """Run tandem's federated apps with ``num_supernodes`` virtual clients (Ray backend).

    A bad ``fl.item_table_init`` or ``fl.content_vectors`` file is refused here, before Ray
    starts, rather than in the ServerApp's thread."""
    if settings.item_table_init or settings.content_vectors:
        from fl.item_table import load_content_vectors
        from fl.task import task_content, task_data

        n_items = task_data(settings).dataset.catalog.n_items
        if settings.item_table_init:
            load_content_vectors(Path(settings.item_table_init), n_items)
        task_content(settings, n_items)  # reads and checks fl.content_vectors, kept for the apps
    if settings.min_available_nodes == 0:  # round 1 waits until every virtual node is registered
        settings = replace(settings, min_available_nodes=num_supernodes)
    simulate_apps(make_server_app(settings), make_client_app(settings), num_supernodes, backend)


def simulate_apps(
    server_app: Any,
    client_app: Any,
    num_supernodes: int,
    backend: SimulationBackend | None = None,
) -> None:
    """Run any ServerApp / ClientApp pair (e.g. the SecAgg+ pair) in the Simulation Runtime."""
    from flwr.simulation import run_simulation

    from simulations.vce_app_cache import app_pickled_once
    from simulations.vce_dispatch import linear_dispatch

    backend = backend or SimulationBackend()
    dispatch = linear_dispatch() if backend.linear_dispatch else nullcontext(False)
    app_once = app_pickled_once() if backend.send_app_once else nullcontext(False)
    with warnings.catch_warnings(), dispatch, app_once:
        warnings.simplefilter("ignore", DeprecationWarning)
        run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=num_supernodes,
            backend_config=backend.backend_config(),
        )
