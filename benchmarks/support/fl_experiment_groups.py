"""The runs of each group of ``benchmarks/fl_vs_central.py``: ``(method, settings, reference)``.

Groups: ``accuracy`` (central vs federated encodings), ``drops`` (crashing clients, with and without
over-selection), ``byzantine`` (attacks under the plain recipe and robust aggregators) and ``dp``
(DP-FedAdam at several noise levels and its variants, each against a non-private reference).
"""

from __future__ import annotations

from collections.abc import Mapping

from fl.settings import FederatedSettings
from fl.strategies import AdaptiveSettings
from fl.task import task_data

DP_CLIP = 1.0
"""DP clipping norm C, fixed before the runs: clean first-round updates of the recipe have L2 norm
1.007-1.009 (10th-90th percentile of 40 clients on the synthetic world; local gradients are clipped
at 1.0 and one SGD step of lr 1.0 dominates), so C = 1 clips little and bounds every update."""


ATTRIBUTES_SUFFIX = "-attributes.npy"
"""How a content-vectors file of catalog attributes is named (``fl_vs_central.attribute_file``)."""


def input_suffix(content_vectors: str) -> str:
    """The method-name part for a run's content input: none, attributes or tiny-CLIP vectors."""
    if not content_vectors:
        return ""
    return " attribute-input" if content_vectors.endswith(ATTRIBUTES_SUFFIX) else " content-input"


def schedule_suffix(settings: FederatedSettings) -> str:
    """`` cosine eta, warm-up 5`` where the server step is scheduled, else ``""``."""
    spec = settings.strategy.settings
    if not isinstance(spec, AdaptiveSettings):
        return ""
    out = f" {spec.eta_schedule} eta" if spec.eta_schedule != "constant" else ""
    return out + (f" warm-up {spec.eta_warmup_rounds}" if spec.eta_warmup_rounds else "")


def experiments(
    group: str,
    base: FederatedSettings,
    dp_sigmas: tuple[float, ...] = (0.5, 0.7, 1.0),
    dp_tau: float | None = None,
    dp_hidden: int | None = None,
    dp_freeze: bool = False,
    dp_overrides: Mapping[str, str] | None = None,
    dp_reference: bool = True,
) -> list[tuple[str, FederatedSettings, str]]:
    """``(method, settings, reference method)`` of a group (``dp_tau``: FedAdam's tau,
    ``dp_hidden``: the model's hidden size, and ``dp_freeze``: the item table kept out of training
    and of the release, for the DP runs only; the non-private reference keeps the base strategy and
    model, and both start from the base's item table, e.g. content-initialised; ``dp_overrides``:
    run-config keys, e.g. ``{"local-epochs": "2"}``, set on the DP runs only; ``dp_reference``
    False: no run of the default recipe when sigma 0 is planned)."""
    if group == "accuracy":  # each against central on the same users (when central ran)
        return [
            ("federated dense", base.replace(update_encoding="dense", quantize="none"), "central"),
            (
                "federated row-sparse",
                base.replace(update_encoding="row-sparse", quantize="none"),
                "central",
            ),
            ("federated row-sparse int8", base, "central"),
            ("federated dense int8", base.replace(update_encoding="dense"), "central"),
        ]
    if group == "drops":
        return [
            ("federated row-sparse int8", base, ""),
            ("20% dropping", base.replace(drop_fraction=0.2), "federated row-sparse int8"),
            (
                "20% dropping, 30% over-selection",
                base.replace(drop_fraction=0.2, over_selection=1.3),
                "federated row-sparse int8",
            ),
        ]
    if group == "byzantine":
        attacks = {
            "signflip x5": {"byzantine_mode": "scale", "byzantine_factor": -5.0},
            "signflip x1": {"byzantine_mode": "scale", "byzantine_factor": -1.0},
            "alie": {"byzantine_mode": "alie", "byzantine_factor": 1.0},
        }
        n_sampled = base.sample_size(task_data(base).partition.n_clients)
        f = max(1, round(0.1 * n_sampled))
        robust = {
            "trimmed-mean": {"robust_aggregator": "trimmed-mean", "robust_trim": 0.15},
            "multikrum": {"robust_aggregator": "multikrum", "robust_byzantine": f},
            "centered-clip": {"robust_aggregator": "centered-clip"},
            "centered-clip sparse-zero": {
                "robust_aggregator": "centered-clip",
                "robust_clip_start": "sparse-zero",
            },
            "norm-filter": {"robust_aggregator": "norm-filter"},
        }
        out = [("federated row-sparse int8", base, "")]
        for rule, extra in robust.items():
            out.append((f"{rule} clean", base.replace(**extra), "federated row-sparse int8"))
        for attack, fields in attacks.items():
            attacked = base.replace(byzantine_fraction=0.1, **fields)
            out.append((f"plain 10% {attack}", attacked, "federated row-sparse int8"))
            for rule, extra in robust.items():
                out.append(
                    (f"{rule} 10% {attack}", attacked.replace(**extra), "federated row-sparse int8")
                )
        return out
    if group == "dp":
        init = (
            (" content-init" if base.item_table_init else "")
            + input_suffix(base.content_vectors)
            + schedule_suffix(base)
        )
        variant = (
            (f" tau {dp_tau:g}" if dp_tau is not None else "")
            + (f" hidden {dp_hidden}" if dp_hidden is not None else "")
            + (" frozen item table" if dp_freeze else "")
            + "".join(f" {key} {value}" for key, value in (dp_overrides or {}).items())
        )
        # a variant's runs get their own reference row (the same non-private run, run again)
        reference = f"federated row-sparse int8 poisson{init}" + (
            f", reference of{variant}" if variant else ""
        )
        poisson = base.replace(client_sampling="poisson")
        with_reference = dp_reference or 0 not in dp_sigmas
        out = [(reference, poisson, "")] if with_reference else []
        # the private runs: the base with Poisson sampling (sigma 0: without DP) and the variant's
        # run-config keys
        private_keys = {
            **({f"strategy.{base.strategy.name}.tau": str(dp_tau)} if dp_tau is not None else {}),
            **(
                {f"model.{base.model.kind}.hidden": str(dp_hidden)} if dp_hidden is not None else {}
            ),
            **({"freeze-item-table": "true"} if dp_freeze else {}),
            **(dp_overrides or {}),
        }
        private = FederatedSettings.from_run_config(poisson.to_run_config(), private_keys)
        # with sigma 0 planned, the private runs are compared with it (the same settings without
        # DP), and it with the base's reference
        same_settings = f"non-private{init}{variant}" if 0 in dp_sigmas else reference
        for sigma in sorted(dp_sigmas):
            out.append(
                (
                    f"dp sigma {sigma}{init}{variant}" if sigma > 0 else same_settings,
                    private.replace(dp_noise_multiplier=sigma, dp_clipping_norm=DP_CLIP),
                    same_settings if sigma > 0 else (reference if with_reference else ""),
                )
            )
        return out
    raise SystemExit(f"unknown group {group!r}")
