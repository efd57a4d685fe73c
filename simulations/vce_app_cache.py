"""Send the ClientApp to the Simulation Runtime's Ray actors once, not once per message.

Flower 1.42's Ray backend runs every message as ``actor.run.remote(app_fn, message, ...)``, where
``app_fn`` is a closure over the ClientApp object. Ray pickles a closure by value, and cloudpickle
walks ``sys.modules`` for the submodules that each pickled function uses: py-spy put that at about
a fifth of the server process's time in a simulated round on the synthetic world (90 messages a
round, 2 actors), while the actors waited for work.

:func:`app_pickled_once` wraps ``app_fn``, for the duration of a simulation, in a
:class:`PickledOnceApp`: it pickles the closure once, and pickles itself as those bytes plus their
digest. An actor unpickles the bytes the first time it sees a digest and reuses the result for
every later message, so each actor holds one ClientApp for the run (as a SuperNode's ClientApp
process does), instead of a fresh copy per message. Everything else (which actor runs what, the
reply path) is Flower's. When the installed Flower lacks the function this wraps, nothing changes
and a warning says so.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

_RESTORED: dict[str, Callable[[], Any]] = {}
"""Per process (Ray actor): the app functions already unpickled, by digest of their bytes."""
MAX_RESTORED = 8


def _restore(digest: str, payload: bytes) -> Callable[[], Any]:
    """The app function pickled as ``payload``: unpickled on the first call in this process."""
    app_fn = _RESTORED.get(digest)
    if app_fn is None:
        from ray import cloudpickle

        if hashlib.sha256(payload).hexdigest() != digest:
            raise ValueError("the ClientApp's pickled bytes do not match their digest")
        if len(_RESTORED) >= MAX_RESTORED:
            _RESTORED.pop(next(iter(_RESTORED)))  # the oldest run's app
        app_fn = _RESTORED[digest] = cloudpickle.loads(payload)
    return app_fn


class PickledOnceApp:
    """``app_fn`` that pickles as its cloudpickle bytes, made once (see the module's docstring)."""

    def __init__(self, app_fn: Callable[[], Any]) -> None:
        from ray import cloudpickle

        self.app_fn = app_fn
        self.payload: bytes = cloudpickle.dumps(app_fn)
        self.digest = hashlib.sha256(self.payload).hexdigest()

    def __call__(self) -> Any:
        return self.app_fn()

    def __reduce__(self) -> tuple[Callable[[str, bytes], Callable[[], Any]], tuple[str, bytes]]:
        return _restore, (self.digest, self.payload)


@contextmanager
def app_pickled_once() -> Iterator[bool]:
    """Inside the block, the Simulation Runtime's ``app_fn`` is a :class:`PickledOnceApp`; yields
    whether the wrap is in place."""
    try:
        from flwr.server.superlink.fleet.vce import vce_api
    except ImportError:
        vce_api = None
    if vce_api is None or not callable(getattr(vce_api, "run_api", None)):
        log.warning("this Flower has no vce_api.run_api to wrap; the ClientApp is sent per message")
        yield False
        return
    flowers = vce_api.run_api

    def run_api(app_fn: Callable[[], Any], *args: Any, **kwargs: Any) -> None:
        flowers(PickledOnceApp(app_fn), *args, **kwargs)

    vce_api.run_api = run_api
    try:
        yield True
    finally:
        vce_api.run_api = flowers
