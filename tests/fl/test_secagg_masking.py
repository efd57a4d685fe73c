"""SecAgg+ measured on the messages: the server never holds an unmasked client vector, yet the aggregate
it unmasks is the plain average of the client vectors within SecAgg+'s quantisation bound.

How it runs. The real SecAgg+ pair (:func:`fl.secagg_app.make_secagg_apps`: ``SecAggPlusWorkflow`` on the
server, ``secaggplus_mod`` on the client) runs in this process: the ServerApp gets an :class:`InProcessGrid`
whose ``send_and_receive`` delivers every message through Flower's protobuf wire format to the ClientApp,
one persistent ``Context`` per node (as a SuperNode keeps it). That replaces the Simulation Runtime on
purpose: its ClientApps run in Ray actors, where neither the grid's replies nor ``SessionModelClient.fit``
can be recorded, and here the grid *is* the server's only channel, so what it records is everything the
server ever receives. ``SessionModelClient.fit`` is wrapped to record each client's true weights.

What SecAgg+ does to a client's weights ``p`` (weight 1, ``flwr`` ``secaggplus_mod._collect_masked_vectors``):
with ``c = clipping_range``, ``Q = quantization_range``, ``q = round(1 / max_weight * Q)``, ``dq = q / Q``,
it sends ``x = (stochastic_round((clip(p dq, -c, c) + c) Q / (2c)) + masks) mod M``. The unmask stage sums the
``m`` vectors (pairwise masks cancel, private masks are removed), dequantises and divides by ``m dq``, so
per coordinate ``|aggregate - mean(p)| = 2c |sum_i e_i| / (m q) < 2c (1 + 2.5 u Q) / q``, where
``|e_i| < 1`` is the stochastic rounding of client ``i`` and ``2.5 u Q`` (``u = 2^-24``) bounds the float32
rounding of ``p dq``, ``+ c`` and ``* Q / (2c)`` in quantisation units. With Flower's defaults
(``c = 8``, ``Q = 2^22``, ``max_weight = 1000``) that is ~6.2e-3.

Asserted, every round:

* no reply in any stage carries an array (the mod clears the ArrayRecord); the only weights the server
  receives are the masked vectors, and none of them is within quantisation error of any client's quantised
  vector on more than 0.1% of coordinates (an unmasked one would match on all), while >= 99% of their entries
  lie above ``Q``, i.e. they spread over the mask modulus as uniform masks make them (quantised weights
  lie in ``[0, Q]``);
* the server asks only for the private-mask seeds of surviving clients (no dead ones, so it never holds a
  secret key that would strip one client's pairwise masks);
* the unmasked aggregate equals the mean of the true client weights within the bound above, and the bound
  is tight enough to see every client: leaving any one client out moves the mean by more than the bound.
"""

import numpy as np
import pytest
from flwr.app import Context, Message, RecordDict
from flwr.common import bytes_to_ndarray
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_PARAMS_RECORD
from flwr.serverapp.grid import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from fl import secagg_app
from fl.settings import FederatedSettings
from fl.task import task_data
from ranking.storage import save_dataset
from simulations.datasets.synthetic import generate_world

FIRST_NODE = 101
UNIT_ROUNDOFF = 2.0**-24  # float32


def _wire(message: Message) -> Message:
    """What the other side receives: the message through Flower's protobuf serialisation."""
    return message_from_proto(message_to_proto(message))


class InProcessGrid(Grid):
    """A Grid whose nodes are one ClientApp called in this process; it records all traffic."""

    def __init__(self, client_app, n_nodes: int) -> None:
        self.client_app = client_app
        self.contexts = {
            FIRST_NODE + i: Context(
                run_id=1,
                node_id=FIRST_NODE + i,
                node_config={"partition-id": i},
                state=RecordDict(),
                run_config={},
            )
            for i in range(n_nodes)
        }
        self.sent: list[Message] = []
        self.received: list[Message] = []
        self._run = Run.create_empty(run_id=1)

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None) -> Message:
        return Message(
            content, dst_node_id=dst_node_id, message_type=message_type, group_id=group_id, ttl=ttl
        )

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def push_messages(self, messages):
        raise NotImplementedError("InProcessGrid delivers in send_and_receive")

    def pull_messages(self, message_ids):
        raise NotImplementedError("InProcessGrid delivers in send_and_receive")

    def send_and_receive(self, messages, *, timeout=None) -> list[Message]:
        replies = []
        for message in messages:
            self.sent.append(_wire(message))
            reply = _wire(
                self.client_app(_wire(message), self.contexts[message.metadata.dst_node_id])
            )
            self.received.append(reply)
            replies.append(reply)
        return replies


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    root = tmp_path_factory.mktemp("secagg")
    save_dataset(generate_world(n_items=150, n_users=90, seed=0).dataset, root / "data.npz")
    return FederatedSettings.create(
        data_path=str(root / "data.npz"),
        run_dir=str(root / "run"),
        num_rounds=2,
        fraction_train=1.0,
        min_train_nodes=4,
        partition="users_per_client",
        users_per_client=20,
        local_epochs=3,
        lr=0.5,
        heldout_fraction=0.3,
        model={"kind": "sasrec", "model": {"hidden": 32, "n_blocks": 1}, "train": {"max_len": 20}},
    )


@pytest.fixture(scope="module")
def secagg_run(settings):
    """Two SecAgg+ rounds; per round: the clients' true weights, the masked vectors, the aggregate."""
    rounds: list[dict] = []
    fit = secagg_app.SessionModelClient.fit
    collect = SecAggPlusWorkflow.collect_masked_vectors_stage
    unmask = SecAggPlusWorkflow.unmask_stage

    def recording_fit(self, parameters, config):
        weights, n, metrics = fit(self, parameters, config)
        rounds[-1]["true"][self.pid] = (np.concatenate([np.ravel(w) for w in weights]), n)
        return weights, n, metrics

    def recording_collect(self, grid, context, state):
        rounds.append({"true": {}, "first_reply": len(grid.received)})
        ok = collect(self, grid, context, state)
        rounds[-1]["masked"] = [
            reply.content.config_records[RECORD_KEY_CONFIGS][Key.MASKED_PARAMETERS]
            for reply in grid.received[rounds[-1]["first_reply"] :]
        ]
        return ok

    def recording_unmask(self, grid, context, state):
        first_request = len(grid.sent)
        ok = unmask(self, grid, context, state)
        aggregate = context.state.array_records[MAIN_PARAMS_RECORD].to_numpy_ndarrays()
        rounds[-1].update(
            ok=ok,
            c=state.clipping_range,
            Q=state.quantization_range,
            M=state.mod_range,
            max_weight=state.max_weight,
            unmask_requests=grid.sent[first_request:],
            aggregate=np.concatenate([np.ravel(a) for a in aggregate]),
        )
        return ok

    with pytest.MonkeyPatch.context() as mp:
        # Messages carry the sender's identity: the ServerApp's.
        mp.setattr(TaskIdentity, "_task_id", 1)
        mp.setattr(TaskIdentity, "_run_id", 1)
        mp.setattr(TaskIdentity, "_node_id", SUPERLINK_NODE_ID)
        mp.setattr(secagg_app.SessionModelClient, "fit", recording_fit)
        mp.setattr(SecAggPlusWorkflow, "collect_masked_vectors_stage", recording_collect)
        mp.setattr(SecAggPlusWorkflow, "unmask_stage", recording_unmask)
        server_app, client_app = secagg_app.make_secagg_apps(settings)
        n_clients = task_data(settings).partition.n_clients
        grid = InProcessGrid(client_app, n_clients)
        server_app(
            grid,
            Context(
                run_id=1,
                node_id=SUPERLINK_NODE_ID,
                node_config={},
                state=RecordDict(),
                run_config={},
            ),
        )
    return rounds, grid, n_clients


def _quantised(true: np.ndarray, weight: int, r: dict) -> tuple[int, np.ndarray]:
    """``q`` and the pre-rounding quantised vector of one client (exact arithmetic)."""
    q = round(weight / r["max_weight"] * r["Q"])
    c = r["c"]
    return q, (np.clip(true.astype(np.float64) * (q / r["Q"]), -c, c) + c) * (r["Q"] / (2 * c))


def test_every_round_ran_with_all_clients(secagg_run, settings):
    rounds, grid, n = secagg_run
    assert n == 4 and len(rounds) == settings.num_rounds
    for r in rounds:
        assert r["ok"] and sorted(r["true"]) == list(range(n)) and len(r["masked"]) == n
        assert all(weight == 1 for _, weight in r["true"].values())


def test_the_server_never_holds_an_unmasked_client_vector(secagg_run):
    rounds, grid, _ = secagg_run
    # No reply in any stage carries weights in the clear (the ArrayRecord is emptied by the mod).
    assert grid.received and all(
        len(record) == 0
        for reply in grid.received
        for record in reply.content.array_records.values()
    )
    # Stochastic rounding + float32 rounding, in quantisation units.
    slack = 1 + 2.5 * UNIT_ROUNDOFF * rounds[0]["Q"]
    for r in rounds:
        for masked_bytes in r["masked"]:
            masked = [bytes_to_ndarray(b).astype(np.int64) for b in masked_bytes]
            factor, vector = masked[0], np.concatenate([np.ravel(a) for a in masked[1:]])
            assert vector.min() >= 0 and vector.max() < r["M"]
            assert np.mean(vector > r["Q"] + slack) >= 0.99  # spread over the modulus, not [0, Q]
            for true, weight in r["true"].values():
                q, expected = _quantised(true, weight, r)
                assert vector.shape == expected.shape
                assert np.mean(np.abs(vector - expected) < slack) <= 1e-3
                assert int(factor[0]) != q
        # Only private-mask seeds of surviving clients are asked for: no secret key of anyone.
        for request in r["unmask_requests"]:
            configs = request.content.config_records[RECORD_KEY_CONFIGS]
            assert list(configs[Key.DEAD_NODE_ID_LIST]) == []
            assert len(configs[Key.ACTIVE_NODE_ID_LIST]) >= 2


def test_the_unmasked_aggregate_is_the_plain_average_within_the_quantisation_bound(secagg_run):
    rounds, _, n = secagg_run
    for r in rounds:
        vectors = np.stack([true.astype(np.float64) for true, _ in r["true"].values()])
        q, _ = _quantised(vectors[0], 1, r)
        bound = 2 * r["c"] * (1 + 2.5 * UNIT_ROUNDOFF * r["Q"]) / q
        error = np.abs(r["aggregate"] - vectors.mean(axis=0))
        assert error.max() <= bound, (error.max(), bound)
        for i in range(n):  # every client's contribution is visible at this precision
            others = np.delete(vectors, i, axis=0).mean(axis=0)
            assert np.abs(r["aggregate"] - others).max() > bound
