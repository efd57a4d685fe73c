"""Seeding torch's generators, without the cost of ``torch.manual_seed`` on a CUDA build.

On a CUDA build of torch whose CUDA is not initialised (every CPU run here), ``torch.manual_seed``
queues a lazy CUDA seeding call and records a Python stack trace for it on every call; a federated
client seeds once per round, and py-spy put that at about 5% of a simulated client's time.
:func:`seed_torch` is ``torch.manual_seed`` wherever CUDA is available, and seeds only the CPU
generator where it is not (the streams a CPU run draws are the same either way).
"""

from __future__ import annotations

import torch

__all__ = ["seed_torch"]


def seed_torch(seed: int) -> None:
    """``torch.manual_seed(seed)``; on a machine without CUDA, only the CPU generator's part."""
    if torch.cuda.is_available():
        torch.manual_seed(seed)
    else:
        torch.default_generator.manual_seed(seed)
