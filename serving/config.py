"""The service's settings (``conf/serving/default.yaml``), read into typed dataclasses.

Unknown keys and ill-typed values raise :class:`~ranking.errors.ConfigError` naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ranking.errors import ConfigError
from ranking.typed_config import check_keys, dataclass_from_mapping

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "conf" / "serving" / "default.yaml"


@dataclass
class SessionSettings:
    kind: str = "memory"
    redis_url: str | None = None
    max_len: int = 50


@dataclass
class Limits:
    max_k: int = 100
    max_session_items: int = 200
    max_body_bytes: int = 65536


@dataclass
class ServiceConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    event_log: str = "serving-state/events.log"
    admin_token: str | None = None
    torch_threads: int = 1
    workers: int = 1
    max_batch: int = 32
    sessions: SessionSettings = field(default_factory=SessionSettings)
    limits: Limits = field(default_factory=Limits)
    ab: dict[str, Any] = field(
        default_factory=lambda: {"salt": "tandem", "variants": [{"name": "all", "share": 1.0}]}
    )

    def __post_init__(self) -> None:
        for name in ("torch_threads", "workers", "max_batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")


def service_config(values: Mapping[str, Any]) -> ServiceConfig:
    """A :class:`ServiceConfig` from a plain mapping (sections checked key by key)."""
    values = dict(values)
    known = {"host", "port", "event_log", "admin_token", "torch_threads", "workers", "max_batch"}
    check_keys(values, known | {"sessions", "limits", "ab"}, "serving")
    sessions = dataclass_from_mapping(SessionSettings, values.pop("sessions", None), "sessions")
    limits = dataclass_from_mapping(Limits, values.pop("limits", None), "limits")
    ab = dict(values.pop("ab", None) or {})
    check_keys(ab, {"salt", "variants"}, "ab")
    top = dataclass_from_mapping(ServiceConfig, values, "serving")
    top.sessions, top.limits = sessions, limits
    if ab:
        top.ab = {"salt": str(ab.get("salt", "tandem")), "variants": list(ab.get("variants") or [])}
    return top


def load_service_config(
    path: str | Path | None = None, overrides: Sequence[str] = ()
) -> ServiceConfig:
    """Read ``path`` (default ``conf/serving/default.yaml``) and apply ``key=value`` overrides."""
    path = Path(path or DEFAULT_CONFIG)
    try:
        cfg = OmegaConf.load(path)
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} is not key=value")
            key = item.split("=", 1)[0]
            if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
                raise ConfigError(f"override {item!r}: unknown key {key!r} in {path}")
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
        plain = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read the service config {path}: {exc}") from exc
    if not isinstance(plain, dict):
        raise ConfigError(f"{path} must hold a mapping of settings")
    return service_config(plain)
