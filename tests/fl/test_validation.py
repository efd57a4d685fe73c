"""Update validation, norm clipping and simulated malicious clients."""

import numpy as np
import pytest

from encoders.errors import ConfigError, TandemError
from fl.compression import encode_update
from fl.validation import (
    RejectedUpdate,
    apply_delta,
    byzantine,
    check_update,
    clip_by_norm,
    global_norm,
    state_delta,
)

EMB = "item_emb.ids.weight"


@pytest.fixture
def ref():
    rng = np.random.default_rng(0)
    return {
        EMB: rng.normal(size=(20, 4)).astype(np.float32),
        "head.weight": rng.normal(size=(4, 4)).astype(np.float32),
        "steps": np.array(3, dtype=np.int64),
    }


def test_valid_state_and_payloads_pass(ref):
    check_update(ref, ref)
    for mode in ("none", "fp16", "int8"):
        check_update(encode_update(ref, [EMB], np.array([1, 5]), mode, ref), ref)
    check_update(encode_update(ref, [EMB], np.array([], dtype=np.int64)), ref)


def _negative_scales(payload: dict) -> None:
    payload[EMB + "::scale"] = np.full_like(payload[EMB + "::scale"], -0.5)


def _int8_minimum(payload: dict) -> None:
    payload[EMB + "::values"][0, 0] = -128


@pytest.mark.parametrize(
    ("poison", "key", "reason"),
    [
        (_negative_scales, EMB + "::scale", "has negative scales"),
        (_int8_minimum, EMB + "::values", "holds -128, outside the symmetric int8 range"),
    ],
)
def test_a_rejected_int8_update_is_a_tandem_error_naming_the_array_and_the_fault(
    ref, poison, key, reason
):
    payload = encode_update(ref, [EMB], np.array([1, 5]), "int8", ref)
    check_update(payload, ref)  # well formed before it is poisoned
    poison(payload)
    with pytest.raises(TandemError) as info:  # the project's errors are caught as TandemError
        check_update(payload, ref)
    assert type(info.value) is RejectedUpdate
    assert (info.value.key, info.value.reason) == (key, reason)
    assert str(info.value) == f"rejected update: array {key!r}: {reason}"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_rejects_non_finite_dense(ref, bad):
    upd = dict(ref)
    upd["head.weight"] = ref["head.weight"].copy()
    upd["head.weight"][1, 2] = bad
    with pytest.raises(RejectedUpdate, match="'head.weight'.*(NaN|Inf)") as info:
        check_update(upd, ref)
    assert info.value.key == "head.weight"


def test_rejects_non_finite_sparse_values_and_fp16_overflow(ref):
    payload = encode_update(ref, [EMB], np.array([2, 3]))
    payload[EMB + "::values"][0, 0] = np.nan
    with pytest.raises(RejectedUpdate, match=f"'{EMB}::values'.*NaN"):
        check_update(payload, ref)
    big = dict(ref, **{"head.weight": np.full((4, 4), 1e6, np.float32)})
    with pytest.raises(RejectedUpdate, match="'head.weight'.*Inf"):
        check_update(encode_update(big, [EMB], np.array([2]), "fp16", ref), ref)


def test_rejects_wrong_shape_and_dtype(ref):
    with pytest.raises(
        RejectedUpdate, match=r"'head.weight': has shape \(4, 5\), expected \(4, 4\)"
    ):
        check_update(dict(ref, **{"head.weight": np.zeros((4, 5), np.float32)}), ref)
    with pytest.raises(RejectedUpdate, match="'steps': has dtype float32"):
        check_update(dict(ref, steps=np.array(3.0, np.float32)), ref)
    payload = encode_update(ref, [EMB], np.array([2, 3]))
    payload[EMB + "::values"] = payload[EMB + "::values"][:, :3]
    with pytest.raises(RejectedUpdate, match=f"'{EMB}::values': has shape"):
        check_update(payload, ref)
    payload = encode_update(ref, [EMB], np.array([2, 3]), "int8", ref)
    del payload[EMB + "::scale"]
    with pytest.raises(RejectedUpdate, match=f"'{EMB}::values': has dtype int8"):
        check_update(payload, ref)


def test_rejects_missing_and_extra_keys(ref):
    upd = {k: v for k, v in ref.items() if k != "head.weight"}
    with pytest.raises(RejectedUpdate, match="'head.weight': is missing"):
        check_update(upd, ref)
    with pytest.raises(RejectedUpdate, match="'extra.bias'"):
        check_update(dict(ref, **{"extra.bias": np.zeros(2)}), ref)
    payload = encode_update(ref, [EMB], np.array([1]))
    del payload[EMB + "::values"]
    with pytest.raises(RejectedUpdate, match=f"'{EMB}::values': is missing"):
        check_update(payload, ref)


@pytest.mark.parametrize(
    ("rows", "match"), [([1, 20], "outside 0..19"), ([-1, 2], "outside"), ([3, 3], "duplicated")]
)
def test_rejects_bad_row_indices(ref, rows, match):
    payload = encode_update(ref, [EMB], np.array([1, 2]))
    payload[EMB + "::rows"] = np.array(rows, dtype=np.int64)
    with pytest.raises(RejectedUpdate, match=f"'{EMB}::rows'.*{match}"):
        check_update(payload, ref)


def test_clip_by_norm_bounds_the_norm():
    rng = np.random.default_rng(1)
    delta = {
        "a": rng.normal(size=(10, 3)).astype(np.float32),
        "b": rng.normal(size=5),
        "n": np.array(4),
    }
    norm = global_norm(delta)
    clipped = clip_by_norm(delta, norm / 4)
    assert global_norm(clipped) == pytest.approx(norm / 4, rel=1e-5)
    assert clipped["a"].dtype == np.float32 and clipped["n"] == 4
    np.testing.assert_allclose(clipped["b"], delta["b"] / 4)
    small = clip_by_norm(delta, norm * 2)
    assert all(np.array_equal(small[k], delta[k]) for k in delta)
    with pytest.raises(ConfigError, match="max_norm"):
        clip_by_norm(delta, 0)


def test_byzantine_signflip_and_scale():
    delta = {"a": np.array([1.0, -2.0], np.float32), "n": np.array(5)}
    flipped = byzantine(delta, "signflip")
    assert flipped["a"].tolist() == [-1.0, 2.0] and flipped["n"] == 5
    assert byzantine(delta, "scale", 10.0)["a"].tolist() == [10.0, -20.0]
    assert byzantine(delta, "signflip", 3.0)["a"].tolist() == [-3.0, 6.0]
    with pytest.raises(ConfigError, match="mode"):
        byzantine(delta, "noise")


def test_delta_round_trip(ref):
    new = {k: (v + 1 if np.issubdtype(v.dtype, np.floating) else v) for k, v in ref.items()}
    d = state_delta(new, ref)
    np.testing.assert_allclose(d["head.weight"], 1.0)
    back = apply_delta(ref, d)
    np.testing.assert_allclose(back[EMB], new[EMB])
    assert back[EMB].dtype == np.float32
