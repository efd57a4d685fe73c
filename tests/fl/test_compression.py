"""Row-sparse / quantised payloads and row-sparse aggregation."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from encoders.errors import ConfigError
from fl.compression import decode_update, encode_update
from fl.payload_format import payload_bytes
from fl.quantization import quantize_int8
from fl.row_selection import changed_rows, largest_change_rows, touched_rows_from_sequences
from fl.row_sparse_aggregation import aggregate_row_sparse
from ranking.data.sequences import pad_left

EMB = "item_emb.ids.weight"


def make_state(rng: np.random.Generator, n_rows: int = 30, dim: int = 6) -> dict[str, np.ndarray]:
    return {
        EMB: rng.normal(size=(n_rows, dim)).astype(np.float32),
        "proj.weight": rng.normal(size=(dim, dim)).astype(np.float32),
        "proj.bias": rng.normal(size=dim).astype(np.float32),
        "bn.num_batches_tracked": np.array(7, dtype=np.int64),
    }


def test_encode_decode_none_is_exact():
    rng = np.random.default_rng(0)
    state = make_state(rng)
    rows = np.array([5, 1, 5, 29])
    payload = encode_update(state, [EMB], rows, "none")
    assert set(payload) == {
        EMB + "::rows",
        EMB + "::values",
        "proj.weight",
        "proj.bias",
        "bn.num_batches_tracked",
    }
    assert all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in payload.items())
    decoded, touched = decode_update(payload, state)
    assert touched[EMB].tolist() == [1, 5, 29]
    assert np.array_equal(decoded[EMB], state[EMB][[1, 5, 29]])
    for key in ("proj.weight", "proj.bias", "bn.num_batches_tracked"):
        assert np.array_equal(decoded[key], state[key]) and decoded[key].dtype == state[key].dtype


def _moved(state: dict[str, np.ndarray], rng: np.random.Generator, size: float) -> dict:
    """``state`` after a small local step of about ``size`` per weight (integers unchanged)."""
    return {
        k: (v + size * rng.normal(size=v.shape)).astype(v.dtype)
        if np.issubdtype(v.dtype, np.floating)
        else v.copy()
        for k, v in state.items()
    }


def test_fp16_sends_the_change_and_round_trips_within_relative_tolerance():
    rng = np.random.default_rng(1)
    ref = make_state(rng)
    state = _moved(ref, rng, 1e-3)
    payload = encode_update(state, [EMB], np.arange(10), "fp16", ref)
    assert (
        payload[EMB + "::values"].dtype == np.float16 and payload["proj.weight"].dtype == np.float16
    )
    assert payload["bn.num_batches_tracked"].dtype == np.int64  # integers are never quantised
    decoded, _ = decode_update(payload, ref)
    assert decoded["proj.weight"].dtype == np.float32
    for got, want, base in [
        (decoded[EMB], state[EMB][:10], ref[EMB][:10]),
        (decoded["proj.weight"], state["proj.weight"], ref["proj.weight"]),
    ]:  # the change itself is kept to fp16's relative precision
        np.testing.assert_allclose(got - base, want - base, rtol=2e-3, atol=1e-6)


def test_int8_sends_the_change_and_round_trips_within_half_scale():
    rng = np.random.default_rng(2)
    ref = make_state(rng)
    state = _moved(ref, rng, 1e-3)
    state["proj.weight"][2] = ref["proj.weight"][2]  # an unchanged row gets scale 0: exact
    rows = np.array([0, 3, 7])
    payload = encode_update(state, [EMB], rows, "int8", ref)
    assert payload[EMB + "::values"].dtype == np.int8
    assert payload[EMB + "::scale"].shape == (3,) and payload[EMB + "::scale"].dtype == np.float32
    assert payload["proj.weight::scale"].shape == (6,) and payload["proj.bias::scale"].shape == (1,)
    change = np.abs(state["proj.weight"] - ref["proj.weight"]).max(axis=1)
    np.testing.assert_allclose(payload["proj.weight::scale"], change / 127, rtol=1e-5)
    decoded, _ = decode_update(payload, ref)
    checks = [
        (decoded[EMB], state[EMB][rows], payload[EMB + "::scale"][:, None]),
        (decoded["proj.weight"], state["proj.weight"], payload["proj.weight::scale"][:, None]),
        (decoded["proj.bias"], state["proj.bias"], payload["proj.bias::scale"]),
    ]
    for got, want, scale in checks:
        assert np.all(np.abs(got - want) <= scale / 2 + 1e-6)
    assert np.array_equal(decoded["proj.weight"][2], ref["proj.weight"][2])


def test_int8_keeps_a_change_far_below_the_weights_own_int8_step():
    """One round moves weights by far less than max|w| / 254: an int8 grid over the weights would
    round the change to nothing, the same way for every client."""
    rng = np.random.default_rng(5)
    ref = {"w": rng.normal(size=(8, 64)).astype(np.float32)}
    step = 1e-4 * rng.normal(size=(8, 64))
    clients = [
        {"w": (ref["w"] + step + 1e-5 * rng.normal(size=(8, 64))).astype(np.float32)}
        for _ in range(20)
    ]
    weight_step = np.abs(ref["w"]).max(axis=1, keepdims=True) / 254
    assert np.all(np.abs(step) < weight_step)
    decoded = [
        decode_update(encode_update(c, [], np.arange(0), "int8", ref), ref)[0]["w"] for c in clients
    ]
    mean_change = np.mean(decoded, axis=0) - ref["w"]
    true_change = np.mean([c["w"] for c in clients], axis=0) - ref["w"]
    assert np.corrcoef(mean_change.ravel(), true_change.ravel())[0, 1] > 0.99
    np.testing.assert_allclose(mean_change, true_change, atol=2e-6)


def test_quantised_updates_need_the_reference_state():
    state = make_state(np.random.default_rng(6))
    for mode in ("fp16", "int8"):
        with pytest.raises(ConfigError, match="reference"):
            encode_update(state, [EMB], np.arange(3), mode)
    with pytest.raises(ConfigError, match="reference_state lacks 'proj.bias'"):
        encode_update(state, [EMB], np.arange(3), "int8", {**state, "proj.bias": np.zeros(2)})


def test_quantize_int8_uses_full_symmetric_range():
    x = np.array([[-2.0, 1.0, 0.5], [0.0, 0.0, 0.0]], dtype=np.float32)
    q, scale = quantize_int8(x)
    assert q[0].tolist() == [-127, 64, 32] and q[1].tolist() == [0, 0, 0]
    np.testing.assert_allclose(scale, [2.0 / 127, 0.0])


def test_sparse_payload_is_much_smaller_than_dense():
    rng = np.random.default_rng(3)
    state = {EMB: rng.normal(size=(1000, 32)).astype(np.float32), "b": np.zeros(4, np.float32)}
    rows = rng.choice(1000, size=20, replace=False)
    dense = payload_bytes(encode_update(state, [], rows, "none"))
    sparse = payload_bytes(encode_update(state, [EMB], rows, "none"))
    sparse_int8 = payload_bytes(encode_update(state, [EMB], rows, "int8", state))
    assert dense == payload_bytes(state)
    assert dense >= 10 * sparse
    assert sparse >= 2.5 * sparse_int8


def test_encode_rejects_bad_arguments():
    state = make_state(np.random.default_rng(4))
    with pytest.raises(ConfigError, match="quantize"):
        encode_update(state, [EMB], np.arange(3), "int4")
    with pytest.raises(ConfigError, match="not in the model state"):
        encode_update(state, ["nope"], np.arange(3))
    with pytest.raises(ConfigError, match="2-D"):
        encode_update(state, ["proj.bias"], np.arange(3))
    with pytest.raises(ConfigError, match="0..29"):
        encode_update(state, [EMB], np.array([30]))
    with pytest.raises(ConfigError, match="separator"):
        encode_update({"a::b": np.zeros(2)}, [], np.arange(0))


def test_touched_rows_from_sequences_padded_and_raw():
    inputs = pad_left([np.array([3, 0, 3]), np.array([7])], max_len=4)  # holds item + 1
    targets = pad_left([np.array([0, 3, 9]), np.array([])], max_len=4)
    assert touched_rows_from_sequences(inputs, targets).tolist() == [1, 4, 8, 10]
    assert touched_rows_from_sequences(np.array([3, 0, 3, 7]), padded=False).tolist() == [1, 4, 8]
    assert touched_rows_from_sequences().tolist() == []


def test_largest_change_rows_picks_the_biggest_moves_outside_the_sent_rows():
    old = np.zeros((6, 2), np.float32)
    new = old.copy()
    new[0] = 9.0  # padding row: never chosen
    new[1] = [3.0, 4.0]  # norm 5, but already sent
    new[2] = [0.0, 2.0]
    new[3] = [0.1, 0.0]
    new[5] = [1.0, 1.0]
    assert largest_change_rows(new, old, 2, exclude=np.array([1])).tolist() == [2, 5]
    assert largest_change_rows(new, old, 10, exclude=np.array([1])).tolist() == [
        2,
        3,
        5,
    ]  # only rows that moved
    assert largest_change_rows(new, old, 0).tolist() == []
    with pytest.raises(ValueError, match="shapes differ"):
        largest_change_rows(new, old[:3], 1)


def test_changed_rows():
    a = np.zeros((5, 3), np.float32)
    b = a.copy()
    b[1, 2] = 1.0
    b[4, 0] = -1.0
    assert changed_rows(b, a).tolist() == [1, 4]


def test_aggregate_mixed_sparse_and_dense_and_zero_weight():
    glob = {EMB: np.zeros((4, 2)), "w": np.zeros(2)}
    a = ({EMB: np.ones((2, 2)), "w": np.ones(2)}, {EMB: np.array([0, 1])})
    # b sends the table dense: it counts as touching every row
    b = ({EMB: np.full((4, 2), 3.0), "w": np.full(2, 3.0)}, {})
    c = ({EMB: np.full((1, 2), 9.0), "w": np.full(2, 9.0)}, {EMB: np.array([3])})
    out = aggregate_row_sparse(glob, [(a, 1.0), (b, 1.0), (c, 0.0)])
    assert out[EMB][:, 0].tolist() == [2.0, 2.0, 3.0, 3.0]
    assert out["w"].tolist() == [2.0, 2.0]
    with pytest.raises(ValueError, match="non-negative"):
        aggregate_row_sparse(glob, [(a, -1.0)])


def test_row_average_all_is_the_dense_average_with_zero_change_for_unsent_rows():
    glob = {EMB: np.ones((4, 2)), "w": np.zeros(2)}
    a = ({EMB: np.full((2, 2), 5.0), "w": np.ones(2)}, {EMB: np.array([0, 1])})  # +4 on rows 0, 1
    b = ({EMB: np.full((1, 2), 3.0), "w": np.full(2, 3.0)}, {EMB: np.array([1])})  # +2 on row 1
    out = aggregate_row_sparse(glob, [(a, 1.0), (b, 3.0)], row_average="all")
    # row 0: only a sent it, its change 4 weighted 1 of 4 in all; row 1: (4 * 1 + 2 * 3) / 4
    assert out[EMB][:, 0].tolist() == [2.0, 3.5, 1.0, 1.0]
    assert out["w"].tolist() == [2.5, 2.5]  # dense keys: the weighted average either way
    senders = aggregate_row_sparse(glob, [(a, 1.0), (b, 3.0)])
    assert senders[EMB][:, 0].tolist() == [5.0, 3.5, 1.0, 1.0]
    with pytest.raises(ValueError, match="row_average"):
        aggregate_row_sparse(glob, [(a, 1.0)], row_average="some")


# --------------------------------------------------------------------------------------------
# Property: row-sparse aggregation equals dense weighted averaging over the touching clients
# --------------------------------------------------------------------------------------------


@st.composite
def federated_round(draw):
    n_rows = draw(st.integers(1, 12))
    dim = draw(st.integers(1, 4))
    n_clients = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    glob = {EMB: rng.normal(size=(n_rows, dim)), "dense": rng.normal(size=(3, dim))}
    clients = []
    for _ in range(n_clients):
        mask = draw(st.lists(st.booleans(), min_size=n_rows, max_size=n_rows))
        rows = np.flatnonzero(mask).astype(np.int64)
        weight = draw(st.floats(0.1, 100.0))
        full = {EMB: rng.normal(size=(n_rows, dim)), "dense": rng.normal(size=(3, dim))}
        clients.append((full, rows, weight))
    return glob, clients


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(federated_round(), st.sampled_from(["none", "fp16", "int8"]))
def test_row_sparse_aggregation_matches_dense_weighted_average(round_, quantize):
    glob, clients = round_
    updates = []
    decoded_full = []
    for full, rows, weight in clients:
        payload = encode_update(full, [EMB], rows, quantize, glob)
        state, touched = decode_update(payload, glob)
        assert np.array_equal(touched[EMB], rows)
        if quantize == "none":
            assert np.array_equal(state[EMB], full[EMB][rows]) and np.array_equal(
                state["dense"], full["dense"]
            )
        updates.append(((state, touched), weight))
        # the dense view of what this client sent (exact for "none", dequantised otherwise)
        dense_emb = np.full_like(glob[EMB], np.nan)
        dense_emb[rows] = state[EMB]
        decoded_full.append((dense_emb, state["dense"], rows, weight))
    out = aggregate_row_sparse(glob, updates)
    weights = np.array([w for *_, w in decoded_full])
    for r in range(glob[EMB].shape[0]):
        who = [i for i, (_, _, rows, _) in enumerate(decoded_full) if r in rows]
        if who:
            want = np.average([decoded_full[i][0][r] for i in who], axis=0, weights=weights[who])
            np.testing.assert_allclose(out[EMB][r], want, rtol=1e-9, atol=1e-12)
        else:
            assert np.array_equal(out[EMB][r], glob[EMB][r])
    want_dense = np.average([d for _, d, _, _ in decoded_full], axis=0, weights=weights)
    np.testing.assert_allclose(out["dense"], want_dense, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    ("n_rows", "dtype"),
    [(200, np.uint8), (256, np.uint8), (257, np.uint16), (65_536, np.uint16), (65_537, np.uint32)],
)
def test_row_indices_travel_in_the_narrowest_type_that_holds_the_last_row(n_rows, dtype):
    table = np.zeros((n_rows, 2), dtype=np.float32)
    rows = np.array([0, n_rows - 1, n_rows // 2])
    payload = encode_update({"emb": table}, ["emb"], rows, "none")
    assert payload["emb::rows"].dtype == dtype
    decoded, touched = decode_update(payload, {"emb": table})
    assert touched["emb"].dtype == np.int64
    assert touched["emb"].tolist() == sorted({0, n_rows - 1, n_rows // 2})
