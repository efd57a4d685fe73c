"""Training losses and the negative sampler, on hand-made tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from ranking.losses import (
    NegativeSampler,
    bce_loss,
    cross_entropy_loss,
    sampled_logits,
    sampled_softmax_loss,
)

N_ITEMS, DIM = 6, 4


def setup(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """hidden [2, 3, D], targets [2, 3] with PAD at (0, 0) and (1, 0..1), item table [7, D]."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(2, 3, DIM, generator=g, requires_grad=True)
    targets = torch.tensor([[0, 3, 6], [0, 0, 1]])
    table = torch.randn(N_ITEMS + 1, DIM, generator=g)
    table[0] = 0
    return hidden, targets, table.requires_grad_()


def test_cross_entropy_matches_torch_on_a_hand_example() -> None:
    hidden = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]]])
    table = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # row 0 = PAD
    targets = torch.tensor([[0, 2, 3]])  # items 1 and 2 (shifted by one), one PAD
    logits = torch.tensor([[1.0, 0.0, 1.0], [0.0, 2.0, 2.0]])
    expected = F.cross_entropy(logits, torch.tensor([1, 2]))
    torch.testing.assert_close(cross_entropy_loss(hidden, targets, table), expected)
    row0 = math.log(1 / (2 * math.e + 1))  # logits (1, 0, 1), target 1
    row1 = math.log(math.e**2 / (1 + 2 * math.e**2))  # logits (0, 2, 2), target 2
    by_hand = -(row0 + row1) / 2
    assert cross_entropy_loss(hidden, targets, table).item() == pytest.approx(by_hand, rel=1e-6)


def _all_losses(
    hidden: torch.Tensor, targets: torch.Tensor, table: torch.Tensor, first: int = 0
) -> dict[str, torch.Tensor]:
    """Every loss on positions ``first..`` of the batch of :func:`setup`."""
    hidden, targets = hidden[:, first:], targets[:, first:]
    negatives = torch.tensor([0, 4, 5])
    per_position = torch.tensor([[1, 1, 2], [3, 4, 5]])[:, first:]
    log_q = torch.log(torch.tensor([0.1, 0.2, 0.3, 0.1, 0.2, 0.1]))
    return {
        "ce": cross_entropy_loss(hidden, targets, table),
        "sampled": sampled_softmax_loss(hidden, targets, table, negatives, log_q),
        "bce": bce_loss(hidden, targets, table, per_position),
    }


@pytest.mark.parametrize("name", ["ce", "sampled", "bce"])
def test_pad_positions_contribute_nothing(name: str) -> None:
    hidden, targets, table = setup()
    loss = _all_losses(hidden, targets, table)[name]
    loss.backward()
    pad = targets == 0
    assert torch.all(hidden.grad[pad] == 0)
    assert torch.any(hidden.grad[~pad] != 0)
    # Changing what sits at PAD positions does not change the loss.
    other = hidden.detach().clone()
    other[pad] = 100.0
    torch.testing.assert_close(_all_losses(other, targets, table.detach())[name], loss.detach())
    # The loss is a mean over the real positions: dropping a PAD column changes nothing.
    without_first = _all_losses(hidden, targets, table, first=1)[name]
    torch.testing.assert_close(without_first, loss)


@pytest.mark.parametrize("name", ["ce", "sampled", "bce"])
def test_all_pad_batch_gives_zero_loss_with_a_graph(name: str) -> None:
    hidden, _, table = setup()
    targets = torch.zeros(2, 3, dtype=torch.long)
    fn = {
        "ce": lambda: cross_entropy_loss(hidden, targets, table),
        "sampled": lambda: sampled_softmax_loss(hidden, targets, table, torch.tensor([1, 2])),
        "bce": lambda: bce_loss(hidden, targets, table, torch.ones_like(targets)),
    }[name]
    loss = fn()
    assert loss.item() == 0.0
    loss.backward()  # still differentiable


def test_logq_correction_shifts_logits_by_minus_log_q() -> None:
    hidden, targets, table = setup()
    h = hidden.detach()[targets != 0]
    pos = targets[targets != 0] - 1
    negatives = torch.tensor([1, 4])
    log_q = torch.log(torch.tensor([0.05, 0.1, 0.15, 0.2, 0.2, 0.3]))
    plain = sampled_logits(h, pos, table.detach(), negatives)
    corrected = sampled_logits(h, pos, table.detach(), negatives, log_q)
    torch.testing.assert_close(corrected[:, 0], plain[:, 0] - log_q[pos])
    finite = torch.isfinite(plain[:, 1:])
    shift = (plain[:, 1:] - log_q[negatives][None])[finite]
    torch.testing.assert_close(corrected[:, 1:][finite], shift)
    # Raw logits are h . e_item.
    torch.testing.assert_close(plain[:, 0], (h * table.detach()[pos + 1]).sum(-1))


def test_uniform_logq_does_not_change_the_loss() -> None:
    hidden, targets, table = setup()
    negatives = torch.tensor([0, 1, 4, 5])
    uniform = torch.full((N_ITEMS,), -math.log(N_ITEMS))
    torch.testing.assert_close(
        sampled_softmax_loss(hidden, targets, table, negatives, uniform),
        sampled_softmax_loss(hidden, targets, table, negatives, None),
    )


def test_sampled_softmax_masks_accidental_hits_and_matches_manual() -> None:
    hidden, targets, table = setup()
    h = hidden.detach()[targets != 0]
    pos = targets[targets != 0] - 1  # items 2, 5, 0
    negatives = torch.tensor([2, 3])
    logits = sampled_logits(h, pos, table.detach(), negatives)
    assert logits.shape == (3, 3)
    assert logits[0, 1] == -math.inf  # negative 2 is row 0's positive
    assert torch.isfinite(logits[1:]).all()
    expected = F.cross_entropy(logits, torch.zeros(3, dtype=torch.long))
    got = sampled_softmax_loss(hidden.detach(), targets, table.detach(), negatives)
    torch.testing.assert_close(got, expected)


def test_sampled_softmax_with_every_item_as_negative_equals_full_softmax() -> None:
    hidden, targets, table = setup()
    all_items = torch.arange(N_ITEMS)
    torch.testing.assert_close(
        sampled_softmax_loss(hidden, targets, table, all_items),
        cross_entropy_loss(hidden, targets, table),
    )


def test_bce_matches_the_sasrec_formula() -> None:
    hidden, targets, table = setup()
    negatives = torch.tensor([[1, 1, 2], [3, 4, 0]])  # the last one is a hit on target item 0
    mask = targets != 0
    h = hidden.detach()[mask]
    pos = targets[mask] - 1
    neg = negatives[mask]
    t = table.detach()
    sp, sn = (h * t[pos + 1]).sum(-1), (h * t[neg + 1]).sum(-1)
    terms = -torch.log(torch.sigmoid(sp)) - torch.log(1 - torch.sigmoid(sn)) * (neg != pos)
    torch.testing.assert_close(bce_loss(hidden.detach(), targets, t, negatives), terms.mean())


def test_negative_sampler_distributions() -> None:
    rng = np.random.default_rng(0)
    uniform = NegativeSampler(5)
    draws = uniform.sample((20_000,), rng).numpy()
    assert draws.min() == 0 and draws.max() == 4
    np.testing.assert_allclose(np.bincount(draws) / len(draws), 0.2, atol=0.02)
    torch.testing.assert_close(uniform.log_q, torch.full((5,), math.log(0.2)))

    counts = np.array([0, 1, 3, 6, 0])
    pop = NegativeSampler(5, "popularity", counts, smoothing=0.0)
    draws = pop.sample((4, 5000), rng).numpy()
    assert draws.shape == (4, 5000)
    freq = np.bincount(draws.ravel(), minlength=5) / draws.size
    np.testing.assert_allclose(freq, [0, 0.1, 0.3, 0.6, 0], atol=0.02)
    assert pop.log_q[0] == -math.inf and pop.log_q[3].item() == pytest.approx(math.log(0.6))

    smoothed = NegativeSampler(5, "popularity", counts)  # +1 smoothing: every item drawable
    assert torch.isfinite(smoothed.log_q).all()
    assert smoothed.probs[0] == pytest.approx(1 / 15)

    with pytest.raises(ValueError, match="counts"):
        NegativeSampler(5, "popularity")
    with pytest.raises(ValueError, match="distribution"):
        NegativeSampler(5, "zipf")
