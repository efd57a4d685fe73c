"""Central DP measured on the messages: every update leaves clipped to C, the server adds N(0, (sigma C / m)^2).

What DP (Flower's ``DifferentialPrivacyClientSideFixedClipping`` + ``fixedclipping_mod``) promises, and
how each promise is measured, without Ray:

* **Clipping.** The real strategy (:func:`fl.strategies.make_strategy`) configures a round; the train
  messages it builds travel through Flower's wire format to the real ClientApp
  (:func:`fl.client_app.make_client_app`, whose ``clipping_when_asked_mod`` calls ``fixedclipping_mod``),
  called in this process. On every reply, the update (reply weights - global weights, flattened over all
  arrays) has norm ``min(||raw update||, C)`` and the raw update's direction, where the raw update is what
  the same client sends when the config carries no clipping norm (training is seeded, so deterministic).
  C is set between the clients' raw norms, so both branches (clipped and untouched) are exercised.
  Float tolerance: the reply is ``w + d`` rounded to float32, so its norm moves by at most
  ``eps32 * ||w + d||`` (triangle inequality over the per-element rounding errors).
* **Noise.** The strategy's ``aggregate_train`` receives ``m`` hand-built replies whose updates are known
  and already within C, so the noiseless FedAvg average is known exactly; over 10^5 coordinates the
  empirical standard deviation of (noisy aggregate - exact average) must lie within 5 standard errors
  (``s / sqrt(2N)``, ~1.1%) of ``sigma * C / m``, its mean within 5 ``s / sqrt(N)`` of 0, and the share of
  coordinates within one standard deviation within 5 binomial standard errors of Gaussian 68.27%. ``m`` is
  the number of clients *sampled* (5 of a population of 10), so dividing by the population would fail.
* **Accounting.** Each release composes one Gaussian mechanism of noise multiplier ``sigma``: epsilon grows
  every round, equals that of a single release at ``sigma / sqrt(T)`` (Gaussian RDP composes additively:
  ``T * a / (2 sigma^2) = a / (2 (sigma / sqrt T)^2)``), and stays under Mironov's classic RDP-to-DP bound
  ``min_a T a / (2 sigma^2) + log(1/delta) / (a - 1) = T / (2 sigma^2) + 2 sqrt(T log(1/delta) / (2 sigma^2))``.
"""

import math

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM
from flwr.supercore.privacy_accounting import (
    GaussianPrivacyEvent,
    NeighboringRelation,
    PrivacyConfig,
    SamplingMethod,
)
from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant
from flwr.supercore.task_identity import TaskIdentity

from fl.client_app import make_client_app
from fl.settings import FederatedSettings
from fl.strategies import UNIT_WEIGHT, make_strategy
from fl.task import build_task_network, from_array_record, get_state, task_data, to_array_record
from ranking.storage import save_dataset
from simulations.datasets.synthetic import generate_world

EPS32 = float(np.finfo(np.float32).eps)
FIRST_NODE = 101  # client node ids (the server is SUPERLINK_NODE_ID)


class NodeList:
    """The one part of a Grid that ``configure_train`` uses: the connected node ids."""

    def __init__(self, n: int) -> None:
        self.node_ids = list(range(FIRST_NODE, FIRST_NODE + n))

    def get_node_ids(self) -> list[int]:
        return self.node_ids


@pytest.fixture(autouse=True)
def server_identity(monkeypatch):
    """Messages are stamped with the sending task's identity; here: the ServerApp's."""
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", SUPERLINK_NODE_ID)


@pytest.fixture
def seeded_numpy():
    """Flower draws DP noise from NumPy's global generator: seed it, then restore it."""
    saved = np.random.get_state()
    np.random.seed(1234)
    yield
    np.random.set_state(saved)


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    root = tmp_path_factory.mktemp("dp")
    save_dataset(generate_world(n_items=150, n_users=90, seed=0).dataset, root / "data.npz")
    return FederatedSettings.create(
        data_path=str(root / "data.npz"),
        run_dir=str(root / "run"),
        num_rounds=1,
        fraction_train=1.0,
        min_train_nodes=4,
        partition="users_per_client",
        users_per_client=20,
        local_epochs=1,
        lr=0.5,
        client_optimizer="sgd",
        strategy={"name": "fedavg"},
        heldout_fraction=0.3,
        dp_noise_multiplier=1.0,
        dp_clipping_norm=1.0,
        model={"kind": "sasrec", "model": {"hidden": 32, "n_blocks": 1}, "train": {"max_len": 20}},
    )


def _wire(message: Message) -> Message:
    """What the other side receives: the message through Flower's protobuf serialisation."""
    return message_from_proto(message_to_proto(message))


def _deliver(app, message: Message) -> Message:
    node = message.metadata.dst_node_id
    context = Context(
        run_id=1,
        node_id=node,
        node_config={"partition-id": node - FIRST_NODE},
        state=RecordDict(),
        run_config={},
    )
    return _wire(app(_wire(message), context))


def _without_clipping_norm(message: Message) -> Message:
    config = ConfigRecord(
        {k: v for k, v in message.content["config"].items() if k != KEY_CLIPPING_NORM}
    )
    content = RecordDict({"arrays": message.content["arrays"], "config": config})
    return Message(
        content,
        dst_node_id=message.metadata.dst_node_id,
        message_type=message.metadata.message_type,
    )


def _flat(state: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in state.values()])


def _update(reply: Message, global_flat: np.ndarray) -> np.ndarray:
    return _flat(from_array_record(reply.content["arrays"])) - global_flat


def _check_gaussian(noise: np.ndarray, std: float) -> None:
    n = noise.size
    measured = float(noise.std())
    assert abs(measured - std) <= 5 * std / math.sqrt(2 * (n - 1)), (measured, std)
    assert abs(float(noise.mean())) <= 5 * std / math.sqrt(n)
    inside, p = float(np.mean(np.abs(noise) <= std)), math.erf(1 / math.sqrt(2))
    assert abs(inside - p) <= 5 * math.sqrt(p * (1 - p) / n), (inside, p)


def test_every_client_update_leaves_clipped_to_the_clipping_norm(settings, seeded_numpy):
    m = task_data(settings).partition.n_clients
    assert m == 4
    torch.manual_seed(0)
    state = get_state(build_task_network(settings, 150))
    global_flat = _flat(state)
    app = make_client_app(settings)
    config = {"lr": settings.lr, "local-epochs": settings.local_epochs}

    # The updates the clients would send unclipped (same messages, no clipping norm in the config).
    probe = make_strategy(settings, m).configure_train(
        1, to_array_record(state), ConfigRecord(config), NodeList(m)
    )
    raw = {
        msg.metadata.dst_node_id: _update(_deliver(app, _without_clipping_norm(msg)), global_flat)
        for msg in probe
    }
    norms = sorted(float(np.linalg.norm(u)) for u in raw.values())
    # C between the raw norms: some clients are clipped, some are not.
    clip = math.sqrt(norms[1] * norms[2])
    assert norms[0] < clip < norms[-1]

    dp = make_strategy(settings.replace(dp_clipping_norm=clip), m)
    messages = list(
        dp.configure_train(1, to_array_record(state), ConfigRecord(config), NodeList(m))
    )
    assert len(messages) == m and all(
        msg.content["config"][KEY_CLIPPING_NORM] == clip for msg in messages
    )
    replies = [_deliver(app, msg) for msg in messages]
    sent = {reply.metadata.src_node_id: reply for reply in replies}
    assert sorted(sent) == sorted(raw)
    clipped = 0
    for node, reply in sent.items():
        update = _update(reply, global_flat)
        tol = EPS32 * float(np.linalg.norm(global_flat + update))  # float32 rounding of w + d
        raw_norm = float(np.linalg.norm(raw[node]))
        assert np.linalg.norm(update) <= clip + tol
        assert np.linalg.norm(update) == pytest.approx(min(raw_norm, clip), abs=tol)
        np.testing.assert_allclose(
            update,
            raw[node] * min(1.0, clip / raw_norm),
            rtol=0,
            atol=EPS32 * np.abs(global_flat).max() * 2,
        )
        clipped += raw_norm > clip
    assert 0 < clipped < m

    # The same round, aggregated: noisy average - exact average is N(0, (sigma C / m)^2) per coordinate.
    arrays, _ = dp.aggregate_train(1, replies)
    exact = np.mean([_flat(from_array_record(r.content["arrays"])) for r in replies], axis=0)
    _check_gaussian(
        _flat(from_array_record(arrays)) - exact, settings.dp_noise_multiplier * clip / m
    )
    assert dp.privacy_spent().num_releases == 1 and dp.privacy_spent().epsilon > 0


def test_server_noise_has_std_sigma_c_over_m_and_epsilon_composes_per_round(seeded_numpy):
    sigma, clip, population = 0.7, 2.0, 10
    settings = FederatedSettings.create(
        dp_noise_multiplier=sigma,
        dp_clipping_norm=clip,
        strategy={"name": "fedavg"},
        fraction_train=0.5,
        min_train_nodes=2,
    )
    m = settings.sample_size(population)
    assert m == 5  # sampled clients, not the population
    dp = make_strategy(settings, population)
    rng = np.random.default_rng(0)
    shapes = {"a": (60_000,), "b": (200, 200)}  # 10^5 coordinates over two arrays
    global_state = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    global_flat = _flat(global_state)

    epsilons: list[float] = []
    previous_noise = None
    for round_ in (1, 2, 3):
        messages = list(
            dp.configure_train(
                round_, to_array_record(global_state), ConfigRecord(), NodeList(population)
            )
        )
        assert len(messages) == m
        replies = []
        for msg in messages:
            update = rng.normal(size=global_flat.size)
            update *= rng.uniform(0.3, 1.0) * clip / np.linalg.norm(update)  # already within C
            flat = (global_flat + update).astype(np.float32)
            arrays, start = {}, 0
            for key, shape in shapes.items():
                size = math.prod(shape)
                arrays[key] = Array(flat[start : start + size].reshape(shape))
                start += size
            metrics = MetricRecord({UNIT_WEIGHT: 1, "num-examples": 7})
            replies.append(
                Message(
                    RecordDict({"arrays": ArrayRecord(arrays), "metrics": metrics}), reply_to=msg
                )
            )
        exact = np.mean([_flat(from_array_record(r.content["arrays"])) for r in replies], axis=0)
        assert all(np.linalg.norm(_update(r, global_flat)) <= clip for r in replies)

        arrays, _ = dp.aggregate_train(round_, replies)
        noise = _flat(from_array_record(arrays)) - exact
        _check_gaussian(noise, sigma * clip / m)
        if previous_noise is not None:  # fresh noise every round
            assert abs(float(np.corrcoef(noise, previous_noise)[0, 1])) <= 5 / math.sqrt(noise.size)
        previous_noise = noise

        spent = dp.privacy_spent()
        assert spent.num_releases == round_ and spent.delta == settings.dp_delta
        epsilons.append(spent.epsilon)

    assert 0 < epsilons[0] < epsilons[1] < epsilons[2]
    for rounds, epsilon in enumerate(epsilons, start=1):
        single = RdpAccountant(
            PrivacyConfig(
                target_delta=settings.dp_delta,
                population_size=population,
                neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
                sampling_method=SamplingMethod.NO_AMPLIFICATION,
            )
        )
        single.compose(
            GaussianPrivacyEvent(
                noise_multiplier=sigma / math.sqrt(rounds),
                sample_size=m,
                population_size=population,
            )
        )
        assert epsilon == pytest.approx(single.get_privacy_spent().epsilon, rel=1e-9)
        a = rounds / (2 * sigma**2)
        assert epsilon <= a + 2 * math.sqrt(a * math.log(1 / settings.dp_delta))
