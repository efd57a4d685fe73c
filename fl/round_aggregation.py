"""One round's aggregation, in stages that compose: attack simulation, then the robust or private
aggregate (or the row-sparse mean), then the strategy's server optimiser.

* **Simulated attack** (``fl.byzantine-mode=alie``): :func:`fl.simulated_attacks.little_is_enough`.
* **Aggregate**, one of:
  - DP (``fl.dp-noise-multiplier`` > 0): clipped uniform sum + Gaussian noise over the expected
    sample size (:mod:`fl.private_aggregation`);
  - a robust rule (``fl.robust-aggregator``, :mod:`fl.robust_aggregation`);
  - row-sparse updates: each row averaged over the clients that sent it;
  - otherwise the strategy's own aggregation of the dense replies.
* **Server optimiser**: the first three hand their aggregate to the strategy as one reply, and
  FedAvg, FedAvgM, FedAdam or FedYogi take their step from it.

With ``fl.freeze-item-table`` (:mod:`fl.item_table`) every update's item table is set back to the
global one before all of this (so it spends none of a DP clipping norm and sways no robust rule),
and the new state keeps the global table: DP noise drawn for it is discarded, post-processing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from flwr.app import Message, MetricRecord, RecordDict

from fl.item_table import FROZEN_KEYS, without_frozen_changes
from fl.payload_format import DecodedUpdate, State
from fl.private_aggregation import clipped_sum, noised_mean
from fl.robust_aggregation import RobustAggregator
from fl.row_sparse_aggregation import aggregate_row_sparse
from fl.simulated_attacks import little_is_enough
from fl.strategies import schedule_server_step
from fl.task import from_array_record, to_array_record
from fl.update_matrix import UpdateMatrix, apply_flat_delta

if TYPE_CHECKING:
    from fl.settings import FederatedSettings

__all__ = ["Accepted", "aggregate_round", "robust_aggregator"]

Accepted = list[tuple[Message, DecodedUpdate, float]]
"""Valid replies: ``(reply, decoded update, weight)``."""


def robust_aggregator(settings: FederatedSettings) -> RobustAggregator:
    return RobustAggregator(
        name=settings.robust_aggregator,
        trim=settings.robust_trim,
        byzantine=settings.robust_byzantine,
        select=settings.robust_select,
        clip_radius=settings.robust_clip_radius,
        clip_iterations=settings.robust_clip_iterations,
        clip_start=settings.robust_clip_start,
        norm_ratio=settings.robust_norm_ratio,
    )


def _with_attack(settings: FederatedSettings, state: State, accepted: Accepted) -> Accepted:
    if settings.byzantine_mode != "alie" or not settings.byzantine_fraction or not accepted:
        return accepted
    flags = [bool(r.content["metrics"].get("byzantine", 0)) for r, _, _ in accepted]
    attacked = little_is_enough(
        state, [d for _, d, _ in accepted], flags, settings.byzantine_factor
    )
    return [(r, d, w) for (r, _, w), d in zip(accepted, attacked, strict=True)]


def _one_reply(state: State, weight: float, reply_to: Message) -> Message:
    """One reply carrying an already aggregated state."""
    metrics = MetricRecord({"num-examples": max(weight, 1.0), "train-loss": 0.0})
    content = RecordDict({"arrays": to_array_record(state), "metrics": metrics})
    return Message(content, reply_to=reply_to)


def _dense_replies(accepted: Accepted) -> list[Message]:
    """Replies rebuilt with dense, dequantised arrays, for the strategies' own aggregation."""
    return [
        Message(
            RecordDict({"arrays": to_array_record(state), "metrics": reply.content["metrics"]}),
            reply_to=reply,
        )
        for reply, (state, _), _ in accepted
    ]


def _private_state(
    settings: FederatedSettings, state: State, accepted: Accepted, round_: int, n_clients: int
) -> State:
    total = clipped_sum(state, [d for _, d, _ in accepted], settings.dp_clipping_norm)
    delta = noised_mean(
        total,
        settings.dp_clipping_norm,
        settings.dp_noise_multiplier,
        settings.fraction_train * n_clients,
        np.random.default_rng([settings.seed, round_, 17]),
    )
    return apply_flat_delta(state, delta)


def aggregate_round(
    strategy: Any,
    settings: FederatedSettings,
    state: State,
    accepted: Accepted,
    round_: int,
    n_clients: int,
    template: Message,
) -> State | None:
    """The new global state, or ``None`` when the strategy released nothing."""
    if settings.freeze_item_table:
        accepted = [(r, without_frozen_changes(state, d), w) for r, d, w in accepted]
    accepted = _with_attack(settings, state, accepted)
    weight = float(sum(w for _, _, w in accepted))
    reply_to = accepted[0][0] if accepted else template
    if settings.dp_enabled:
        replies = [
            _one_reply(
                _private_state(settings, state, accepted, round_, n_clients), weight, reply_to
            )
        ]
    elif settings.robust_aggregator != "none":
        updates = UpdateMatrix.from_updates(state, [d for _, d, _ in accepted])
        target = updates.apply(state, robust_aggregator(settings).aggregate(updates))
        replies = [_one_reply(target, weight, reply_to)]
    elif settings.update_encoding == "row-sparse":
        averaged = aggregate_row_sparse(
            state, [(d, w) for _, d, w in accepted], settings.sparse_row_average
        )
        replies = [_one_reply(averaged, weight, reply_to)]
    else:
        replies = _dense_replies(accepted)
    schedule_server_step(strategy, settings.strategy, round_, settings.num_rounds)
    arrays, _ = strategy.aggregate_train(round_, replies)
    if arrays is None:
        return None
    # server optimisers (FedAdam...) return float64: keep the model's dtypes
    new = {k: np.asarray(v, dtype=state[k].dtype) for k, v in from_array_record(arrays).items()}
    if settings.freeze_item_table:
        new.update({k: state[k] for k in FROZEN_KEYS if k in state})
    return new
