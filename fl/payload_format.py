"""The key layout of an encoded model update, shared by the encoder and the validator.

A payload is a flat ``dict[str, np.ndarray]`` (string keys, numpy arrays only, so it maps
one-to-one onto a Flower ``ArrayRecord``):

* ``<key>``: a dense array (every state entry that is not an embedding table);
* ``<key>::rows`` (``[k]``, sorted, unique; the narrowest unsigned integer type that holds the
  table's last row index, e.g. ``uint16`` for up to 65,536 rows; any integer type is accepted)
  and ``<key>::values`` (``[k, ...]``): the touched rows of an embedding table and their values;
* quantised (``fp16`` / ``int8``) floating-point entries hold the change from the reference state
  (the global state the client started from), not the weights;
* ``<key>::scale`` (``float32``): present only for int8-quantised arrays; one scale per row for
  arrays of two or more dimensions (per sent row for embedding values), one per tensor (shape
  ``(1,)``) otherwise.

State keys must not contain :data:`SEP`. :func:`fl.compression.encode_update` writes payloads,
:func:`fl.validation.check_update` checks them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = [
    "ROWS",
    "SCALE",
    "SEP",
    "VALUES",
    "DecodedUpdate",
    "State",
    "payload_bytes",
    "sparse_keys",
]

SEP = "::"
ROWS = SEP + "rows"
VALUES = SEP + "values"
SCALE = SEP + "scale"

State = dict[str, np.ndarray]
DecodedUpdate = tuple[State, dict[str, np.ndarray]]
"""``(state, touched)`` as returned by :func:`fl.compression.decode_update`."""


def sparse_keys(payload: Mapping[str, np.ndarray]) -> list[str]:
    """The embedding keys sent row-sparse in ``payload``."""
    return [k[: -len(ROWS)] for k in payload if k.endswith(ROWS)]


def payload_bytes(payload: Mapping[str, np.ndarray]) -> int:
    """Total size in bytes of the arrays in ``payload`` (a payload or a plain state)."""
    return int(sum(np.asarray(a).nbytes for a in payload.values()))
