"""One client's local training (fl.local_training): steps, optimisers and seeding."""

import numpy as np
import pytest

from fl.local_training import train_locally
from fl.settings import FederatedSettings
from fl.task import build_task_network, get_state, reusable_task_network
from ranking.data import UserSequences, sequence_windows

MODEL = {"kind": "sasrec", "model": {"hidden": 16, "n_blocks": 1}, "train": {"max_len": 5}}


def _settings(**changes) -> FederatedSettings:
    return FederatedSettings.create(model=MODEL, **changes)


def _one_user(length: int, n_items: int = 30) -> UserSequences:
    items = (np.arange(length) % n_items + 1).astype(np.int64)
    return UserSequences(
        indptr=np.array([0, length]), items=items, timestamps=np.arange(length, dtype=np.int64)
    )


@pytest.fixture
def network():
    return build_task_network(_settings(), 30)


def test_a_smaller_local_batch_gives_a_longer_history_more_steps(network):
    sequences = _one_user(23)
    n_windows = len(sequence_windows(sequences, 5)[0])
    assert n_windows >= 4
    state = get_state(network)
    default = train_locally(_settings(), network, state, sequences, round_=1, pid=0)
    assert default["steps"] == 1  # all windows fit the model's batch of 128
    per_window = train_locally(
        _settings(local_batch_size=1, local_epochs=2), network, state, sequences, round_=1, pid=0
    )
    assert per_window["steps"] == 2 * n_windows
    capped = train_locally(
        _settings(local_batch_size=1), network, state, sequences, round_=1, pid=0, max_steps=2
    )
    assert capped["steps"] == 2


def test_training_starts_from_the_global_state_and_follows_the_seed(network):
    sequences = _one_user(23)
    state = get_state(network)
    settings = _settings(local_batch_size=2, lr=0.5)
    train_locally(settings, network, state, sequences, round_=3, pid=7)
    first = get_state(network)
    train_locally(settings, network, state, sequences, round_=3, pid=7)
    again = get_state(network)
    train_locally(settings, network, state, sequences, round_=4, pid=7)
    other_round = get_state(network)
    key = "item_emb.ids.weight"
    assert not np.allclose(first[key], state[key])
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert any(not np.array_equal(first[k], other_round[k]) for k in first)


def test_client_adam_moves_each_weight_by_at_most_about_lr_per_step(network):
    sequences = _one_user(23)
    state = get_state(network)
    lr = 1e-3
    result = train_locally(
        _settings(client_optimizer="adam", lr=lr, local_epochs=3), network, state, sequences, 1, 0
    )
    moved = max(float(np.abs(v - state[k]).max()) for k, v in get_state(network).items())
    # a fresh Adam's step is at most about lr per coordinate (bias-corrected, eps aside)
    assert 0 < moved <= 1.05 * lr * result["steps"]


def test_a_negative_local_batch_size_is_refused():
    with pytest.raises(Exception, match="local_batch_size"):
        _settings(local_batch_size=-1)


def test_a_reused_network_trains_exactly_as_a_freshly_built_one():
    settings = _settings(local_batch_size=2, lr=0.5)
    sequences = _one_user(23)
    reused = reusable_task_network(settings, 30)
    assert reusable_task_network(settings, 30) is reused
    assert reusable_task_network(settings, 31) is not reused  # another catalog, another network
    reused = reusable_task_network(settings, 30)
    state = get_state(build_task_network(settings, 30))
    train_locally(settings, reused, state, sequences, round_=2, pid=1)  # an earlier round...
    train_locally(settings, reused, state, sequences, round_=5, pid=3)  # ...then this one
    fresh = build_task_network(settings, 30)
    train_locally(settings, fresh, state, sequences, round_=5, pid=3)
    got, want = get_state(reused), get_state(fresh)
    assert all(np.array_equal(got[k], want[k]) for k in want)


def test_local_sgd_training_does_not_import_torch_dynamo():
    """A torch.optim optimizer imports torch._dynamo and sympy on first use (~100 MB on a device);
    the client's plain SGD must not."""
    import subprocess
    import sys

    probe = (
        "import sys, numpy as np\n"
        "from fl.local_training import train_locally\n"
        "from fl.settings import FederatedSettings\n"
        "from fl.task import build_task_network, get_state\n"
        "from ranking.data import UserSequences\n"
        f"s = FederatedSettings.create(model={MODEL!r})\n"
        "net = build_task_network(s, 30)\n"
        "seq = UserSequences(indptr=np.array([0, 12]), items=np.arange(1, 13),"
        " timestamps=np.arange(12))\n"
        "r = train_locally(s, net, get_state(net), seq, round_=1, pid=0)\n"
        "assert r['steps'] >= 1, r\n"
        "print(sorted(m for m in sys.modules if m.startswith(('torch._dynamo', 'sympy'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_frozen_item_table_stays_put_while_the_rest_trains(network, optimizer):
    sequences = _one_user(23)
    state = get_state(network)
    key = "item_emb.ids.weight"
    frozen = _settings(freeze_item_table=True, client_optimizer=optimizer, lr=0.5)
    train_locally(frozen, network, state, sequences, round_=1, pid=0)
    after = get_state(network)
    assert np.array_equal(after[key], state[key])
    assert any(not np.array_equal(after[k], state[k]) for k in state if k != key)
    # the same (reused) network trains its table again once the setting is off
    train_locally(_settings(client_optimizer=optimizer, lr=0.5), network, state, sequences, 1, 0)
    assert not np.array_equal(get_state(network)[key], state[key])
