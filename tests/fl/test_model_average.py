"""Server-side model averaging (``fl.model_average_decay``): the evaluated and saved model is the
exponential moving average of the rounds' models, clients keep training the last one, and a
resumed run continues the same average."""

from pathlib import Path

import numpy as np
import pytest
from builders import world_settings
from in_process_grid import InProcessGrid, server_identity

from fl.client_app import make_client_app
from fl.model_average import averaged
from fl.server_app import FINAL_MODEL, load_round_average, load_round_state, run_rounds
from fl.settings import FederatedSettings
from fl.task import build_task_network, get_state
from ranking.errors import ConfigError
from ranking.recommender import load_recommender

N_ITEMS = 60


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return world_settings(
        tmp_path_factory.mktemp("average"),
        n_items=N_ITEMS,
        n_users=32,
        seed=5,
        fraction_train=1.0,
        partition="users_per_client",
        users_per_client=8,
        min_train_nodes=2,
        lr=0.5,
        heldout_fraction=0.3,
        strategy={"name": "fedadam", "eta": 0.05},
        dp_noise_multiplier=0.5,
        model={"kind": "sasrec", "model": {"hidden": 16, "n_blocks": 1}, "train": {"max_len": 10}},
    )


def _rounds(settings: FederatedSettings, run_dir: Path, rounds: int) -> Path:
    settings = settings.replace(run_dir=str(run_dir), num_rounds=rounds)
    with server_identity():
        run_rounds(InProcessGrid(make_client_app(settings), n_nodes=4), settings)
    return run_dir


def _final(run_dir: Path) -> dict[str, np.ndarray]:
    network = load_recommender(run_dir / FINAL_MODEL).network
    return {k: v.detach().numpy() for k, v in network.state_dict().items()}


def test_averaged_mixes_the_float_arrays_and_keeps_dtypes_and_integer_arrays():
    average = {"w": np.array([1.0, 3.0], np.float32), "n": np.array([1, 2])}
    model = {"w": np.array([3.0, 7.0], np.float32), "n": np.array([5, 6])}
    out = averaged(average, model, 0.75)
    np.testing.assert_allclose(out["w"], [1.5, 4.0])
    assert out["w"].dtype == np.float32 and out["n"].tolist() == [5, 6]


def test_the_saved_model_is_the_moving_average_of_the_rounds_models(base, tmp_path):
    initial = get_state(build_task_network(base, N_ITEMS))
    one = load_round_state(_rounds(base, tmp_path / "one", 1))[1]
    two = load_round_state(_rounds(base, tmp_path / "two", 2))[1]
    assert any(not np.allclose(one[k], two[k]) for k in one)  # each round moved the model
    decay = 0.6
    run_dir = _rounds(base.replace(model_average_decay=decay), tmp_path / "avg", 2)
    last = load_round_state(run_dir)[1]
    for key in two:  # clients trained the same last models: the average did not feed back
        np.testing.assert_allclose(last[key], two[key], rtol=1e-5, atol=1e-6)
    final = _final(run_dir)
    for key in two:
        if not np.issubdtype(two[key].dtype, np.floating):
            continue
        expected = decay**2 * initial[key] + decay * (1 - decay) * one[key] + (1 - decay) * two[key]
        np.testing.assert_allclose(final[key], expected, rtol=1e-4, atol=1e-5, err_msg=key)
        np.testing.assert_allclose(load_round_average(run_dir)[key], expected, rtol=1e-4, atol=1e-5)


def test_a_resumed_run_continues_the_average(base, tmp_path):
    settings = base.replace(model_average_decay=0.6)
    run_dir = _rounds(settings, tmp_path / "resumed", 1)
    after_one = load_round_average(run_dir)
    assert after_one is not None
    _rounds(settings, run_dir, 2)  # resumes after round 1
    last = load_round_state(run_dir)[1]
    final = _final(run_dir)
    for key, value in averaged(after_one, last, 0.6).items():
        if np.issubdtype(value.dtype, np.floating):
            np.testing.assert_allclose(final[key], value, rtol=1e-5, atol=1e-6, err_msg=key)


def test_resuming_with_an_average_from_a_checkpoint_without_one_is_refused(base, tmp_path):
    run_dir = _rounds(base, tmp_path / "plain", 1)
    with pytest.raises(ConfigError, match="model_average_decay=0.6.*without a model average"):
        _rounds(base.replace(model_average_decay=0.6), run_dir, 2)


def test_a_decay_outside_zero_to_one_is_refused():
    with pytest.raises(ConfigError, match="model_average_decay"):
        FederatedSettings.create(model_average_decay=1.0)
