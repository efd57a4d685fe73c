"""FedAdam/FedYogi's server step schedule (``fl.strategy.eta_schedule``, warm-up): its values over
the rounds and its checks (the step the round loop takes with it: ``test_strategy_matrix.py``)."""

import math

import pytest

from fl.settings import FederatedSettings
from fl.strategies import AdaptiveSettings
from ranking.errors import ConfigError


def test_constant_schedule_keeps_eta_every_round():
    spec = AdaptiveSettings(eta=0.004)
    assert {spec.eta_at(r, 50) for r in range(1, 51)} == {0.004}


def test_warm_up_rises_linearly_to_eta_then_cosine_falls_to_its_floor_at_the_last_round():
    spec = AdaptiveSettings(
        eta=0.01, eta_schedule="cosine", eta_warmup_rounds=4, eta_min_fraction=0.2
    )
    steps = [spec.eta_at(r, 24) for r in range(1, 25)]
    assert steps[:4] == pytest.approx([0.0025, 0.005, 0.0075, 0.01])
    assert steps[4] == pytest.approx(0.01)  # the first round after the warm-up
    assert steps[-1] == pytest.approx(0.002)  # eta * eta_min_fraction
    assert all(a >= b for a, b in zip(steps[4:], steps[5:], strict=False))
    # half-way through the cosine part: the mean of eta and the floor
    middle = 4 + 1 + (24 - 4 - 1) / 2
    assert spec.eta_at(math.floor(middle), 24) > 0.006 > spec.eta_at(math.ceil(middle), 24)


def test_rounds_past_the_planned_number_keep_the_floor():
    spec = AdaptiveSettings(eta=0.01, eta_schedule="cosine", eta_min_fraction=0.5)
    assert spec.eta_at(30, 20) == pytest.approx(0.005)


@pytest.mark.parametrize(
    ("key", "value"),
    [("eta_schedule", "linear"), ("eta_warmup_rounds", -1), ("eta_min_fraction", 1.5)],
)
def test_a_bad_schedule_setting_is_refused_naming_it(key, value):
    with pytest.raises(ConfigError, match=key):
        FederatedSettings.create(strategy={"name": "fedadam", key: value})
