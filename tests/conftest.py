"""Suite-wide setup: tandem's generated Hydra schemas are registered before any test composes
``conf/`` (importing :mod:`simulations` registers them, as ``tandem-simulate`` does)."""

import os

import pytest

os.environ["WANDB_MODE"] = (
    "disabled"  # W&B stays off in tests (and their subprocesses) unless a test enables it
)

import simulations  # noqa: E402, F401


@pytest.fixture
def fail_missing_commands() -> None:
    """Used by :func:`processes.require_commands` under ``CI=true``: a missing CLI fails the test."""
    pytest.fail(
        "CI=true but a Flower command is missing next to this Python (see require_commands)"
    )
