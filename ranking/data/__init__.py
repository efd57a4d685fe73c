"""The one data model: an item catalog, an interaction log, splits and sequence batches.

Conventions
-----------
* Items and users have **dense ids** ``0 .. n-1``. The external ids (as read from a file) are kept in
  ``Catalog.ids`` and ``Interactions.user_ids`` so that results can be mapped back.
* Interactions are kept **sorted by (user, timestamp, original order)**; every constructor that
  builds an :class:`Interactions` sorts it, so "the user's last event" is always well defined.
* Padded sequence batches hold ``item + 1`` and use ``0`` (:data:`PAD`) as padding, so an embedding
  table for a sequence model has ``n_items + 1`` rows.

Modules
-------
* :mod:`ranking.data.catalog`: :class:`Catalog`;
* :mod:`ranking.data.interactions`: :class:`Interactions`, :class:`UserSequences`,
  :func:`build_interactions`;
* :mod:`ranking.data.dataset`: :class:`Dataset`;
* :mod:`ranking.data.splits`: :class:`Split`, :func:`leave_one_out`, :func:`temporal_split`,
  :func:`holdout_users`;
* :mod:`ranking.data.sequences`: :data:`PAD`, :func:`pad_left`, :func:`sequence_windows`.

Every name is re-exported here, so ``from ranking.data import Interactions`` keeps working.
"""

from ranking.data.catalog import Catalog
from ranking.data.dataset import Dataset
from ranking.data.interactions import Interactions, UserSequences, build_interactions
from ranking.data.sequences import PAD, pad_left, sequence_windows
from ranking.data.splits import Split, holdout_users, leave_one_out, temporal_split

__all__ = [
    "PAD",
    "Catalog",
    "Dataset",
    "Interactions",
    "Split",
    "UserSequences",
    "build_interactions",
    "holdout_users",
    "leave_one_out",
    "pad_left",
    "sequence_windows",
    "temporal_split",
]
