"""seed_torch gives the random streams of torch.manual_seed."""

import torch

from ranking.seeding import seed_torch


def test_seed_torch_gives_the_streams_of_manual_seed():
    torch.manual_seed(11)
    want = torch.rand(5), torch.randn(3), torch.randint(0, 100, (4,))
    torch.rand(7)  # move the generator on
    seed_torch(11)
    got = torch.rand(5), torch.randn(3), torch.randint(0, 100, (4,))
    assert all(torch.equal(a, b) for a, b in zip(want, got, strict=True))
    seed_torch(12)
    assert not torch.equal(torch.rand(5), want[0])
