"""The ClientApp is pickled once for the Ray actors: the wrapper pickles as fixed bytes, a process
unpickles them once, tampered bytes are refused, and Flower's run_api is back after the block."""

import pickle

import pytest
from flwr.server.superlink.fleet.vce import vce_api

from simulations import vce_app_cache
from simulations.vce_app_cache import PickledOnceApp, app_pickled_once


class CountedPickling:
    """Counts how often it is pickled."""

    pickled = 0

    def __reduce__(self):
        CountedPickling.pickled += 1
        return (CountedPickling, ())


def _app_fn():
    held = CountedPickling()

    def load():  # a closure, as Flower's app_fn is
        return ("the app", held)

    return load


def test_the_app_is_pickled_once_and_unpickled_once_per_process():
    CountedPickling.pickled = 0
    wrapped = PickledOnceApp(_app_fn())
    assert CountedPickling.pickled == 1
    blobs = [pickle.dumps(wrapped) for _ in range(3)]
    assert CountedPickling.pickled == 1 and len(set(blobs)) == 1
    vce_app_cache._RESTORED.clear()
    first, second = pickle.loads(blobs[0]), pickle.loads(blobs[1])
    assert first is second and first()[0] == "the app"
    assert wrapped()[0] == "the app"


def test_bytes_that_do_not_match_their_digest_are_refused():
    wrapped = PickledOnceApp(_app_fn())
    vce_app_cache._RESTORED.clear()
    with pytest.raises(ValueError, match="digest"):
        vce_app_cache._restore(wrapped.digest, wrapped.payload + b"x")


def test_only_inside_the_block_does_the_runtime_get_the_wrapped_app():
    flowers = vce_api.run_api
    seen = []

    def fake_run_api(app_fn, *args):
        seen.append((app_fn, args))

    vce_api.run_api = fake_run_api
    try:
        with app_pickled_once() as used:
            assert used
            vce_api.run_api(_app_fn(), "backend_fn", "nodes")
        assert vce_api.run_api is fake_run_api and seen[0][1] == ("backend_fn", "nodes")
        assert isinstance(seen[0][0], PickledOnceApp)
    finally:
        vce_api.run_api = flowers
