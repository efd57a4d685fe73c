"""The one place that starts Flower's in-process Simulation Runtime (``run_simulation``).

``flwr.simulation.run_simulation`` is deprecated in favour of ``flwr run``; the Hydra entry point
still uses it because it runs the same ServerApp/ClientApp in this process with settings baked in,
which keeps sweeps simple. ``flwr run .`` (see the README) runs the very same apps.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

from fl.client_app import make_client_app
from fl.server_app import make_server_app
from fl.settings import FederatedSettings


def simulate(settings: FederatedSettings, num_supernodes: int, num_cpus: int | None = None) -> None:
    """Run tandem's federated apps with ``num_supernodes`` virtual clients (Ray backend)."""
    simulate_apps(make_server_app(settings), make_client_app(settings), num_supernodes, num_cpus)


def simulate_apps(
    server_app: Any, client_app: Any, num_supernodes: int, num_cpus: int | None = None
) -> None:
    """Run any ServerApp / ClientApp pair (e.g. the SecAgg+ pair) in the Simulation Runtime."""
    from flwr.simulation import run_simulation

    cpus = num_cpus or os.cpu_count() or 1
    backend_config = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {"num_cpus": cpus, "include_dashboard": False, "logging_level": logging.ERROR},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=num_supernodes,
            backend_config=backend_config,
        )
