"""Next-item training losses for the sequence models, and the negative sampler they use.

Every loss takes the model's per-position hidden vectors ``[B, L, D]``, the padded targets
``[B, L]`` (shifted ids: item ``i`` is ``i + 1``, ``0`` = PAD) and the item table
``[n_items + 1, D]`` (row 0 = padding), and averages over the non-PAD target positions only, so
padding contributes nothing (a batch without any target gives a zero loss).

* :func:`cross_entropy_loss`: softmax over the whole catalog, as in SASRec+ (Klenitskiy &
  Vasilev, "Turning Dross Into Gold Loss: is BERT4Rec really better than SASRec?", RecSys 2023).
* :func:`sampled_softmax_loss`: softmax over the target and ``N`` negatives shared by the batch,
  with the logQ correction (Bengio & Senecal 2008; Yi et al. 2019): every logit ``s_j`` becomes
  ``s_j - log q(j)``, ``q`` being the probability of drawing item ``j`` as a negative, for the
  target and for the negatives. Negatives that equal the row's target are masked out.
* :func:`bce_loss`: the original SASRec objective, binary cross-entropy with one negative per
  position.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from ranking.data.sequences import PAD

__all__ = [
    "NegativeSampler",
    "bce_loss",
    "cross_entropy_loss",
    "sampled_logits",
    "sampled_softmax_loss",
]


def _targets(hidden: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """The hidden vectors ``[M, D]`` and 0-based item ids ``[M]`` of the non-PAD targets."""
    if hidden.shape[:-1] != targets.shape:
        raise ValueError(
            f"hidden {tuple(hidden.shape)} does not match targets {tuple(targets.shape)}"
        )
    mask = targets != PAD
    return hidden[mask], targets[mask] - 1


def cross_entropy_loss(hidden: Tensor, targets: Tensor, item_table: Tensor) -> Tensor:
    """Mean full-softmax cross-entropy over the non-PAD positions.

    The logits of a position are ``hidden @ item_table[1:].T`` (every real item, padding row
    excluded).
    """
    h, pos = _targets(hidden, targets)
    if pos.numel() == 0:
        return hidden.sum() * 0.0
    return F.cross_entropy(h @ item_table[1:].T, pos)


def sampled_logits(
    hidden: Tensor,
    positives: Tensor,
    item_table: Tensor,
    negatives: Tensor,
    log_q: Tensor | None = None,
) -> Tensor:
    """``[M, 1 + N]`` logits of the positive (column 0) and the ``N`` shared negatives.

    ``hidden [M, D]``, ``positives [M]`` and ``negatives [N]`` (0-based item ids). With
    ``log_q [n_items]`` (log sampling probabilities) every logit of item ``j`` is reduced by
    ``log_q[j]``. A negative equal to the row's positive gets ``-inf`` (an accidental hit).
    """
    pos_logit = (hidden * item_table[positives + 1]).sum(dim=-1)
    neg_logit = hidden @ item_table[negatives + 1].T
    if log_q is not None:
        pos_logit = pos_logit - log_q[positives]
        neg_logit = neg_logit - log_q[negatives][None, :]
    neg_logit = neg_logit.masked_fill(negatives[None, :] == positives[:, None], float("-inf"))
    return torch.cat([pos_logit[:, None], neg_logit], dim=1)


def sampled_softmax_loss(
    hidden: Tensor,
    targets: Tensor,
    item_table: Tensor,
    negatives: Tensor,
    log_q: Tensor | None = None,
) -> Tensor:
    """Mean sampled-softmax cross-entropy over the non-PAD positions (see :func:`sampled_logits`).

    ``negatives [N]`` are 0-based item ids shared by all positions of the batch; pass ``log_q``
    (e.g. :attr:`NegativeSampler.log_q`) for the logQ correction.
    """
    h, pos = _targets(hidden, targets)
    if pos.numel() == 0:
        return hidden.sum() * 0.0
    logits = sampled_logits(h, pos, item_table, negatives, log_q)
    return F.cross_entropy(logits, torch.zeros_like(pos))


def bce_loss(hidden: Tensor, targets: Tensor, item_table: Tensor, negatives: Tensor) -> Tensor:
    """The original SASRec loss: ``-log s(h.e_pos) - log(1 - s(h.e_neg))``, mean over positions.

    ``negatives [B, L]`` holds one 0-based negative item per position (values at PAD target
    positions are ignored). A negative that equals its position's target contributes no negative
    term.
    """
    if negatives.shape != targets.shape:
        raise ValueError(
            f"negatives {tuple(negatives.shape)} must match targets {tuple(targets.shape)}"
        )
    mask = targets != PAD
    h, pos = _targets(hidden, targets)
    if pos.numel() == 0:
        return hidden.sum() * 0.0
    neg = negatives[mask]
    pos_logit = (h * item_table[pos + 1]).sum(dim=-1)
    neg_logit = (h * item_table[neg + 1]).sum(dim=-1)
    keep = (neg != pos).to(h.dtype)
    return (F.softplus(-pos_logit) + keep * F.softplus(neg_logit)).mean()


class NegativeSampler:
    """Draws negative items uniformly or in proportion to their popularity.

    Parameters
    ----------
    n_items:
        Catalog size.
    distribution:
        ``"uniform"`` or ``"popularity"`` (probability proportional to ``counts ** alpha``).
    counts:
        Interactions per item, needed for ``"popularity"``.
    alpha:
        Popularity exponent (``1``: proportional to the smoothed counts; ``0``: uniform).
    smoothing:
        Added to every count before the exponent, so that items unseen in ``counts`` keep a
        small probability and a finite ``log_q`` (a positive may be an item the counts never
        saw, e.g. in a federated client whose counts are global).
    """

    def __init__(
        self,
        n_items: int,
        distribution: str = "uniform",
        counts: np.ndarray | None = None,
        *,
        alpha: float = 1.0,
        smoothing: float = 1.0,
    ) -> None:
        if distribution not in ("uniform", "popularity"):
            raise ValueError(
                f"distribution must be 'uniform' or 'popularity', got {distribution!r}"
            )
        self.n_items = n_items
        self.distribution = distribution
        if distribution == "uniform":
            probs = np.full(n_items, 1.0 / n_items)
        else:
            if counts is None or len(counts) != n_items:
                raise ValueError(f"popularity sampling needs counts for all {n_items} items")
            weights = np.power(np.asarray(counts, dtype=np.float64) + smoothing, alpha)
            if not np.all(np.isfinite(weights)) or weights.sum() <= 0:
                raise ValueError("popularity weights must be finite with a positive sum")
            probs = weights / weights.sum()
        self.probs = probs
        self._cdf = np.cumsum(probs)
        self._cdf[-1] = 1.0
        with np.errstate(divide="ignore"):
            self.log_q = torch.from_numpy(np.log(probs)).float()
        """``[n_items]`` log probability of drawing each item."""

    def sample(self, shape: int | tuple[int, ...], rng: np.random.Generator) -> Tensor:
        """``int64`` 0-based item ids of the given shape, drawn i.i.d. with replacement."""
        if self.distribution == "uniform":
            items = rng.integers(0, self.n_items, size=shape)
        else:
            items = np.searchsorted(self._cdf, rng.random(size=shape), side="right")
            items = np.minimum(items, self.n_items - 1)
        return torch.from_numpy(np.asarray(items, dtype=np.int64))
