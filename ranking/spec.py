"""The model spec: one nested description of a session model, carried whole everywhere.

A session model is ``{kind, model: {...}, train: {...}}``: the kind (``sasrec``, ``gru4rec``,
``gru``, ``lstm``, ``longshort``), the network's own settings and its :class:`TrainConfig`. The
same spec travels from Hydra (``conf/model/*.yaml``) through Flower's run config, the ClientApp and
ServerApp, the checkpoint manifest, the pipeline and the exporter, and :func:`build_network` is the
one function that builds a network from it. A key that no part of the spec understands raises
:class:`~ranking.errors.ConfigError` naming it: nothing is dropped.

In Flower's run config (flat, dotted keys) a spec reads ``model.kind``, ``model.train.<key>`` and
``model.<kind>.<key>`` (one table per kind, so that ``--run-config "model.kind='gru4rec'"`` finds
that kind's settings): see :meth:`ModelSpec.to_run_config` / :meth:`ModelSpec.from_run_config`.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from ranking.errors import ConfigError
from ranking.models import MODELS, SequenceModel, build_model
from ranking.seeding import seed_torch
from ranking.train_config import TrainConfig
from ranking.typed_config import cast_value, check_keys

__all__ = ["ModelSpec", "build_network", "model_setting_types"]

SPEC_KEYS = frozenset({"kind", "model", "train"})
HYDRA_KEYS = frozenset({"_target_", "_convert_", "_recursive_", "_partial_"})
"""Hydra's own keys in a ``model/`` option: read by Hydra, not part of the spec."""
NOT_SETTINGS = frozenset({"self", "n_items", "content"})


def _constructor(kind: str) -> Any:
    try:
        ctor = MODELS[kind]
    except KeyError:
        raise ConfigError(
            f"model.kind={kind!r} is not known; expected one of {sorted(MODELS)}"
        ) from None
    return ctor


def model_setting_types(kind: str) -> dict[str, tuple[Any, Any]]:
    """``{setting: (annotation, default)}`` of the network ``kind`` (from its constructor).

    Settings fixed by a named kind (``cell`` of ``gru`` / ``lstm``) are not listed.
    """
    ctor = _constructor(kind)
    fixed = dict(getattr(ctor, "keywords", {}) or {})
    func = getattr(ctor, "func", ctor)
    hints = typing.get_type_hints(func.__init__ if inspect.isclass(func) else func)
    out = {}
    for name, param in inspect.signature(func).parameters.items():
        if name in NOT_SETTINGS or name in fixed:
            continue
        out[name] = (hints.get(name, Any), param.default)
    return out


def _model_settings(kind: str, values: Mapping[str, Any], where: str) -> dict[str, Any]:
    types_ = model_setting_types(kind)
    values = {str(k).replace("-", "_"): v for k, v in values.items()}
    check_keys(values, set(types_), where)
    return {k: cast_value(v, types_[k][0], f"{where}.{k}") for k, v in values.items()}


@dataclass(frozen=True)
class ModelSpec:
    """A session model: ``kind``, the network settings ``model`` and the ``train`` config.

    Build one with :meth:`from_mapping` (validates every key and value); :meth:`to_dict` gives the
    plain nested form back (what checkpoints and bundles store).
    """

    kind: str = "sasrec"
    model: Mapping[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        _model_settings(self.kind, self.model, "model.model")
        max_len = self.model.get("max_len")
        if max_len is not None and int(max_len) < self.train.max_len:
            raise ConfigError(
                f"model.model.max_len={max_len} is shorter than model.train.max_len={self.train.max_len}"
            )

    @classmethod
    def from_mapping(
        cls,
        spec: Mapping[str, Any] | ModelSpec,
        where: str = "model",
        model_where: str | None = None,
    ) -> ModelSpec:
        """A spec from its nested form ``{kind, model, train}`` (Hydra's keys are ignored).

        Errors name ``<where>.model.<key>`` (or ``<model_where>.<key>``) and ``<where>.train.<key>``.
        """
        if isinstance(spec, ModelSpec):
            return spec
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where} must be a mapping {{kind, model, train}}, got {spec!r}")
        values = {k: v for k, v in spec.items() if k not in HYDRA_KEYS}
        check_keys(values, SPEC_KEYS, where)
        if "kind" not in values:
            raise ConfigError(
                f"{where}.kind is missing: {where} is not a sequence model spec (kinds: {sorted(MODELS)})"
            )
        kind = str(values["kind"])
        model = _model_settings(
            kind, dict(values.get("model") or {}), model_where or f"{where}.model"
        )
        train = values.get("train")
        if not isinstance(train, TrainConfig):
            if train is not None and not isinstance(train, Mapping):
                raise ConfigError(
                    f"{where}.train must be a mapping of training settings, got {train!r}"
                )
            train = TrainConfig.from_mapping(train, where=f"{where}.train")
        return cls(kind=kind, model=model, train=train)

    def to_dict(self) -> dict[str, Any]:
        """The plain nested form (JSON-serialisable)."""
        return {
            "kind": self.kind,
            "model": dict(self.model),
            "train": dataclasses.asdict(self.train),
        }

    def replace(self, **changes: Any) -> ModelSpec:
        return dataclasses.replace(self, **changes)

    def with_train(self, **changes: Any) -> ModelSpec:
        """The spec with some training settings changed (e.g. a client's local epochs)."""
        return dataclasses.replace(self, train=self.train.replace(**changes))

    def network_settings(self) -> dict[str, Any]:
        """The keyword arguments of the network (``max_len`` defaults to ``train.max_len``)."""
        settings = dict(self.model)
        if "max_len" in model_setting_types(self.kind):
            settings.setdefault("max_len", self.train.max_len)
        return settings

    # ---- Flower's run-config form ------------------------------------------------------------

    def to_run_config(self, prefix: str = "model") -> dict[str, Any]:
        """Flat dotted keys: ``model.kind``, ``model.<kind>.<key>``, ``model.train.<key>``.

        ``None`` is written as ``"null"`` (Flower's run config has no null).
        """
        out: dict[str, Any] = {f"{prefix}.kind": self.kind}
        for key, value in self.model.items():
            out[f"{prefix}.{self.kind}.{key.replace('_', '-')}"] = _scalar(value)
        for key, value in dataclasses.asdict(self.train).items():
            out[f"{prefix}.train.{key.replace('_', '-')}"] = _scalar(value)
        return out

    @classmethod
    def from_run_config(cls, flat: Mapping[str, Any], prefix: str = "model") -> ModelSpec:
        """The spec from flat dotted keys under ``prefix`` (other kinds' tables are ignored)."""
        head = f"{prefix}."
        keys = {k[len(head) :]: v for k, v in flat.items() if str(k).startswith(head)}
        kind = str(keys.get("kind", "sasrec"))
        _constructor(kind)
        model: dict[str, Any] = {}
        train: dict[str, Any] = {}
        for key, value in keys.items():
            section, _, name = key.partition(".")
            if key == "kind":
                continue
            if section == "train" and name:
                train[name] = value
            elif section == kind and name:
                model[name] = value
            elif section not in MODELS or not name:
                raise ConfigError(
                    f"unknown setting {head}{key}; expected {head}kind, {head}train.<key> or "
                    f"{head}<kind>.<key> with a kind in {sorted(MODELS)}"
                )
        spec = {"kind": kind, "model": model, "train": train}
        return cls.from_mapping(spec, where=prefix, model_where=f"{prefix}.{kind}")

    @staticmethod
    def default_run_config(kinds: tuple[str, ...], prefix: str = "model") -> dict[str, Any]:
        """Run-config defaults of every kind in ``kinds`` (the tables ``pyproject.toml`` lists)."""
        out = ModelSpec().to_run_config(prefix)
        for kind in kinds:
            for name, (_, default) in model_setting_types(kind).items():
                if name != "max_len":
                    out[f"{prefix}.{kind}.{name.replace('_', '-')}"] = _scalar(default)
        return out


def _scalar(value: Any) -> Any:
    return "null" if value is None else value


def build_network(spec: ModelSpec, n_items: int, content: Tensor | None = None) -> SequenceModel:
    """The network of ``spec`` for ``n_items`` items, initialised from ``spec.train.seed``.

    Every process that builds from the same spec (central trainer, Flower server and clients,
    pipeline, exporter) gets the same parameters and the same ``state_dict`` keys.
    """
    seed_torch(spec.train.seed)
    return build_model(spec.kind, n_items, content=content, **spec.network_settings())
