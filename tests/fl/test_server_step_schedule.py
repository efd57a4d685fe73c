"""FedAdam/FedYogi's server step schedule (``fl.strategy.eta_schedule``, warm-up): its values over
the rounds, its checks, and the step the real ServerApp round loop takes with it."""

import math
from pathlib import Path

import numpy as np
import pytest
from builders import world_settings
from in_process_grid import InProcessGrid, server_identity

from fl.client_app import make_client_app
from fl.server_app import load_round_state, run_rounds
from fl.settings import FederatedSettings
from fl.strategies import AdaptiveSettings
from fl.task import build_task_network, get_state
from ranking.errors import ConfigError

N_ITEMS = 60


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


def _first_round_change(tmp_path: Path, name: str, **strategy) -> dict[str, np.ndarray]:
    settings = world_settings(
        tmp_path,
        n_items=N_ITEMS,
        n_users=24,
        seed=5,
        num_rounds=1,
        fraction_train=1.0,
        partition="users_per_client",
        users_per_client=6,
        min_train_nodes=2,
        lr=0.5,
        heldout_fraction=0.25,
        model={"kind": "sasrec", "model": {"hidden": 16, "n_blocks": 1}, "train": {"max_len": 8}},
        strategy={"name": name, "eta": 0.05, **strategy},
        run_dir=str(tmp_path / "run"),
    )
    initial = get_state(build_task_network(settings, N_ITEMS))
    with server_identity():
        rows = run_rounds(InProcessGrid(make_client_app(settings), n_nodes=4), settings)
    _, final = load_round_state(Path(settings.run_dir))
    assert rows[-1]["eta"] == pytest.approx(AdaptiveSettings(eta=0.05, **strategy).eta_at(1, 1))
    return {k: final[k].astype(np.float64) - initial[k] for k in final}


@pytest.mark.parametrize("name", ["fedadam", "fedyogi"])
def test_the_server_takes_the_scheduled_step(tmp_path, name):
    """Round 1 of a two-round warm-up steps with eta / 2: the same client updates move every
    weight half as far as with the constant step (Adam's step is linear in eta)."""
    full = _first_round_change(tmp_path / "constant", name)
    half = _first_round_change(tmp_path / "warm-up", name, eta_warmup_rounds=2)
    scale = max(float(np.abs(d).max()) for d in full.values())
    assert scale > 0.01  # the round moved the model
    for key, change in full.items():
        assert np.abs(half[key] - 0.5 * change).max() <= 1e-3 * scale, key
