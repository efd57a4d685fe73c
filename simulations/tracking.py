"""Weights & Biases tracking of a run: its config, per-round and per-epoch metrics, tables,
figures and summary. Only the Hydra entry points use it (``fl/`` and ``ranking/`` never import
W&B); it is a context manager, so a failed job is finished too, with a non-zero exit code::

    with Tracker.start(config, job_type="pipeline", group=sweep_id, run_dir=output_dir) as tracker:
        tracker.log_round({"round": 1, "ndcg@10": 0.12})
        model.fit(train, callback=epoch_callback("l2"))  # per-epoch rows to the open tracker
        tracker.summary({"ndcg@10": 0.31})

Mode
----
``tracking.enabled=false`` turns tracking off (nothing is written and W&B is not imported).
Otherwise the ``WANDB_MODE`` environment variable wins when set (``online``, ``offline``,
``disabled``); without it a run goes ``online`` only if ``WANDB_API_KEY`` is set, else
``offline``. Nothing is ever interactive: there is no login prompt, and W&B's console output
is silenced (the run's own log is Hydra's).

Where runs go
-------------
Every run is written under ``<run_dir>/wandb/`` (``run_dir`` is the Hydra job's output
directory): an offline run in ``<run_dir>/wandb/offline-run-<time>-<id>/``, whose
``run-<id>.wandb`` file holds everything logged (config, history, summary, exit code). Upload
offline runs later with ``wandb sync``, e.g. every run of a sweep::

    wandb sync runs/multirun/2026-01-31/12-00-00/*/wandb/offline-run-*

Config keys (``tracking:`` in ``conf/config.yaml``): ``enabled`` (bool, default true),
``project`` (default ``"tandem"``), ``entity`` (default ``None``: the key's default entity) and
``tags`` (a list of strings, default empty).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from ranking.errors import ConfigError

log = logging.getLogger("tandem")

TRACKING_DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "project": "tandem",
    "entity": None,
    "tags": [],
}
"""Every ``tracking.*`` key with its default."""

MODES = {
    "online": "online",
    "run": "online",
    "offline": "offline",
    "dryrun": "offline",
    "disabled": "disabled",
}
"""``WANDB_MODE`` values and the mode each one means."""


def tracking_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``tracking`` section of a resolved config, defaults filled in.

    Raises
    ------
    ConfigError
        On a key that is not in :data:`TRACKING_DEFAULTS` or a value of the wrong type.
    """
    section = config.get("tracking") or {}
    if not isinstance(section, Mapping):
        raise ConfigError(
            f"tracking must be a mapping of {sorted(TRACKING_DEFAULTS)}, got {section!r}"
        )
    unknown = sorted(set(section) - set(TRACKING_DEFAULTS))
    if unknown:
        raise ConfigError(
            f"tracking.{unknown[0]} is not known; expected one of {sorted(TRACKING_DEFAULTS)}"
        )
    out = {**TRACKING_DEFAULTS, **section}
    if not isinstance(out["enabled"], bool):
        raise ConfigError(f"tracking.enabled must be true or false, got {out['enabled']!r}")
    if not isinstance(out["project"], str) or not out["project"]:
        raise ConfigError(f"tracking.project must be a non-empty string, got {out['project']!r}")
    if out["entity"] is not None and not isinstance(out["entity"], str):
        raise ConfigError(f"tracking.entity must be a string or null, got {out['entity']!r}")
    tags = out["tags"]
    if (
        isinstance(tags, str)
        or not isinstance(tags, Sequence)
        or not all(isinstance(t, str) for t in tags)
    ):
        raise ConfigError(f"tracking.tags must be a list of strings, got {tags!r}")
    out["tags"] = list(tags)
    return out


def resolve_mode(enabled: bool = True) -> str:
    """``"online"``, ``"offline"`` or ``"disabled"`` (see the module docstring for the rules)."""
    if not enabled:
        return "disabled"
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env:
        if env not in MODES:
            raise ConfigError(
                f"environment variable WANDB_MODE={env!r} is not known; "
                f"expected one of {sorted(MODES)}"
            )
        return MODES[env]
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def hydra_identity() -> tuple[str | None, str | None]:
    """``(group, name)`` of the current Hydra job: in a multirun the group names the sweep (its
    directory) and the name adds the job number; a single run has neither."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None, None
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return None, None
    group = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(hc.sweep.dir)).strip("-")
    return group, f"{group}-{hc.job.num}"


def _numbers(row: Mapping[str, Any], prefix: str, skip: str = "") -> dict[str, float | int]:
    """The numeric values of ``row`` (but ``skip``), keyed ``<prefix>/<key>``."""
    return {
        f"{prefix}/{k}": v
        for k, v in row.items()
        if k != skip and isinstance(v, int | float) and not isinstance(v, bool)
    }


class Tracker:
    """One W&B run (or nothing, when disabled). Build it with :meth:`start`.

    Per-round and per-epoch rows are logged as ``round/<metric>`` and ``epoch/<metric>``, each
    series plotted against its own step metric (``round`` or ``epoch``), so a run may log both.
    """

    def __init__(self, run: Any = None, mode: str = "disabled") -> None:
        self.run = run
        self.mode = mode
        self._epoch = -1
        self._stages: set[str] = set()
        self._outer: Tracker | None = None

    @property
    def enabled(self) -> bool:
        """Whether a W&B run is open."""
        return self.run is not None

    @property
    def run_path(self) -> Path | None:
        """The run's local directory (``<run_dir>/wandb/<offline-run-...>``), while it is open."""
        return None if self.run is None else Path(self.run.settings.sync_dir)

    @classmethod
    def start(
        cls,
        config: Mapping[str, Any],
        *,
        job_type: str,
        group: str | None = None,
        run_dir: Path,
        name: str | None = None,
    ) -> Tracker:
        """Open a run for one job.

        Parameters
        ----------
        config:
            The job's resolved config (a ``DictConfig`` is resolved here); recorded whole.
        job_type:
            The run mode (``pipeline``, ``central``, ``federated``).
        group:
            The sweep (multirun) the job belongs to, if any; see :func:`hydra_identity`.
        run_dir:
            The job's output directory; the run is written under ``run_dir/wandb``.
        name:
            The run's display name (W&B picks one when ``None``).

        Raises
        ------
        ConfigError
            On a bad ``tracking`` section or ``WANDB_MODE``, or when W&B cannot start the run.
        """
        from omegaconf import DictConfig, OmegaConf

        if isinstance(config, DictConfig):
            config = OmegaConf.to_container(config, resolve=True)  # type: ignore[assignment]
        settings = tracking_settings(config)
        mode = resolve_mode(settings["enabled"])
        if mode == "disabled":
            return cls()
        import wandb

        run_dir = Path(run_dir).resolve()
        run_dir.mkdir(parents=True, exist_ok=True)  # before init: W&B looks for the git root there
        if mode == "online" and not wandb.login(prompt=False, verify=False):
            raise ConfigError(
                "W&B is online (WANDB_MODE=online) but has no credentials (WANDB_API_KEY or "
                "`wandb login`); set WANDB_MODE=offline or tracking.enabled=false"
            )
        try:
            run = wandb.init(
                project=settings["project"],
                entity=settings["entity"],
                tags=settings["tags"] or None,
                config=dict(config),
                group=group,
                job_type=job_type,
                name=name,
                dir=str(run_dir),
                mode=mode,
                reinit="finish_previous",
                settings=wandb.Settings(silent=True, console="off"),
            )
        except Exception as exc:  # wandb raises its own types, and OSError on an unwritable dir
            raise ConfigError(
                f"W&B could not start a {mode} run in {run_dir}: {exc}; set WANDB_MODE=offline "
                f"(or tracking.enabled=false) to run without the W&B server"
            ) from exc
        run.define_metric("round")
        run.define_metric("round/*", step_metric="round")
        run.define_metric("epoch")
        run.define_metric("epoch/*", step_metric="epoch")
        tracker = cls(run, mode)
        if mode == "offline":
            log.info(
                "W&B run written offline to %s (upload: wandb sync %s)",
                tracker.run_path,
                tracker.run_path,
            )
        return tracker

    def __enter__(self) -> Tracker:
        """Open the ``with`` block; inside it this is the :func:`active_tracker`."""
        global _ACTIVE
        self._outer, _ACTIVE = _ACTIVE, self
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global _ACTIVE
        _ACTIVE, self._outer = self._outer, None
        code = 0
        if exc_type is not None:
            code = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 1
        self.finish(code)

    def log_round(self, row: Mapping[str, Any]) -> None:
        """Log one federated round's numeric metrics against ``row["round"]``.

        A row whose round is not a number (e.g. the ``"central"`` reference row) goes to the
        summary as ``<round>/<metric>``.
        """
        if self.run is None:
            return
        round_ = row.get("round")
        if isinstance(round_, int) and not isinstance(round_, bool):
            self.run.log({"round": round_, **_numbers(row, "round", skip="round")})
        elif round_ is not None:
            self.summary(_numbers(row, str(round_), skip="round"))

    def log_epoch(self, row: Mapping[str, Any], stage: str | None = None) -> None:
        """Log one training epoch's numeric metrics against ``row["epoch"]`` (else the next one).

        With a ``stage`` (e.g. ``"clip"``, ``"l1"``, ``"l2"``) the metrics are logged as
        ``epoch/<stage>/<metric>``, so the trainers of one run keep separate curves.
        """
        if self.run is None:
            return
        self._epoch = int(row.get("epoch", self._epoch + 1))
        prefix = "epoch" if stage is None else f"epoch/{stage}"
        if stage is not None and stage not in self._stages:
            self._stages.add(stage)
            self.run.define_metric(f"{prefix}/*", step_metric="epoch")
        self.run.log({"epoch": self._epoch, **_numbers(row, prefix, skip="epoch")})

    def log_table(self, name: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Log ``rows`` as a ``wandb.Table`` (columns: the union of keys, first seen first)."""
        if self.run is None or not rows:
            return
        import wandb

        columns = list(dict.fromkeys(k for row in rows for k in row))
        data = [[row.get(c) for c in columns] for row in rows]
        self.run.log({name: wandb.Table(columns=columns, data=data, allow_mixed_types=True)})

    def log_image(self, name: str, path: str | Path) -> None:
        """Log the image file at ``path`` (e.g. a report figure)."""
        if self.run is None:
            return
        import wandb

        self.run.log({name: wandb.Image(str(path))})

    def summary(self, metrics: Mapping[str, Any]) -> None:
        """Set the run's summary values (the final numbers a sweep compares)."""
        if self.run is not None:
            self.run.summary.update(dict(metrics))

    def finish(self, exit_code: int = 0) -> None:
        """Close the run (idempotent); a non-zero ``exit_code`` marks it failed.

        When it returns the run is complete on disk: W&B writes after ``finish()`` returns, so
        its service is shut down here (the next run starts it again).
        """
        if self.run is None:
            return
        import wandb

        run, self.run = self.run, None
        run.finish(exit_code=exit_code)
        if wandb.run is None:  # flush: W&B writes the run's files after finish() returns
            wandb.teardown()


_ACTIVE: Tracker | None = None
"""The tracker of the innermost open ``with Tracker.start(...)`` block (see :func:`active_tracker`)."""


def active_tracker() -> Tracker | None:
    """The tracker whose ``with`` block is open (the job's run), or ``None`` outside one."""
    return _ACTIVE


def epoch_callback(stage: str, tracker: Tracker | None = None) -> Callable[..., None]:
    """A trainer's per-epoch ``callback(epoch, row, model)`` that logs ``row`` to W&B.

    Every trainer takes one: ``SequenceRecommender.fit`` (central L2),
    ``TwoTowerRetriever.fit`` (L1) and ``encoders.contrastive.train_contrastive`` (CLIP). Each
    epoch's numeric metrics (loss, validation NDCG@10, seconds...) go to ``tracker`` (default:
    the :func:`active_tracker` when the epoch ends) as ``epoch/<stage>/<metric>``; with no
    tracker, or a disabled one, the callback does nothing. ``ranking/`` and ``encoders/`` stay
    free of W&B: they only call a plain function.
    """

    def log_epoch(epoch: int, row: Mapping[str, Any], *_model: Any) -> None:
        target = tracker if tracker is not None else _ACTIVE
        if target is not None:
            target.log_epoch({**row, "epoch": int(epoch)}, stage=stage)

    return log_epoch
