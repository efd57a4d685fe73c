"""Hydra schemas generated from tandem's settings dataclasses, so every default is written once.

Registered in Hydra's ConfigStore when :mod:`simulations` is imported:

* ``train/base``: :class:`ranking.train_config.TrainConfig` (the ``train/`` options extend it);
* ``fl/base``: the round settings of :class:`fl.settings.FederatedSettings` (without the data
  path, seed, run directory and the two specs, which the run supplies) plus ``compare_central``;
* ``fl/strategy/<name>``: one option per entry of :data:`fl.strategies.STRATEGIES`, holding
  ``name`` and that strategy's settings with their defaults.

Being typed, these schemas also check overrides when a run is composed: ``fl.num_rounds=abc``
fails before any work starts, naming the key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field, make_dataclass
from typing import Any

from hydra.core.config_store import ConfigStore

from fl.settings import FederatedSettings
from fl.strategies import STRATEGIES
from ranking.train_config import TrainConfig
from ranking.typed_config import field_types

SUPPLIED_BY_RUN = ("data_path", "seed", "run_dir")
"""Round settings that the run sets from its own config (``seed``, cache path, output dir)."""


def _schema(
    name: str, cls: type, skip: tuple[str, ...] = (), extra: list[Any] | None = None
) -> type:
    types = field_types(cls)
    specs: list[Any] = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        if f.default is not dataclasses.MISSING:
            specs.append((f.name, types[f.name], field(default=f.default)))
        else:
            specs.append((f.name, types[f.name], field(default_factory=f.default_factory)))
    return make_dataclass(name, specs + list(extra or []))


def register_configs() -> None:
    """Store the schemas (idempotent)."""
    store = ConfigStore.instance()
    store.store(group="train", name="base", node=_schema("TrainSchema", TrainConfig))
    round_skip = (*SUPPLIED_BY_RUN, "model", "strategy")
    fl_schema = _schema(
        "FederatedSchema",
        FederatedSettings,
        round_skip,
        [("compare_central", bool, field(default=False)), ("strategy", Any, field(default=None))],
    )
    store.store(group="fl", name="base", node=fl_schema)
    for name, entry in STRATEGIES.items():
        node = _schema(f"{name}_schema", entry.settings, extra=[("name", str, field(default=name))])
        store.store(group="fl/strategy", name=name, node=node)
