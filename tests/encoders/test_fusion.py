"""Modality fusion into the shared L1 space."""

import pytest
import torch

from encoders.errors import ConfigError
from encoders.fusion import ItemFusion


def vectors(n=12, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g)


@pytest.mark.parametrize("mode", ["concat", "gated"])
def test_outputs_are_normalised_and_missing_modalities_change_the_vector(mode):
    text, image = vectors(seed=0), vectors(seed=1)
    no_image = torch.ones(12, dtype=torch.bool)
    no_image[3] = False
    fusion = ItemFusion(
        text=text, image=image, image_present=no_image, out_dim=16, mode=mode
    ).eval()
    out = fusion()
    assert out.shape == (12, 16)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(12))
    # Item 3 has no image: changing its image vector must not change its fused vector,
    # while the same change to item 4 (which has one) does.
    with torch.no_grad():
        before = fusion(torch.tensor([3, 4]))
        fusion.image_vectors[3:5] = torch.randn(2, 8)
        after = fusion(torch.tensor([3, 4]))
    torch.testing.assert_close(after[0], before[0])
    assert not torch.allclose(after[1], before[1])


def test_modality_dropout_only_in_training_and_never_hides_everything():
    fusion = ItemFusion(text=vectors(), image=vectors(seed=1), modality_dropout=1.0, mode="gated")
    fusion.train()
    present = fusion._present(torch.arange(12))
    assert ((present["text"].int() + present["image"].int()) == 1).all()  # exactly one hidden
    fusion.eval()
    present = fusion._present(torch.arange(12))
    assert present["text"].all() and present["image"].all()


def test_id_only_and_bad_configs():
    ids_only = ItemFusion(text=None, image=None, n_id_items=5, out_dim=4)
    assert ids_only().shape == (5, 4)
    with pytest.raises(ConfigError, match="at least one"):
        ItemFusion(text=None, image=None)
    with pytest.raises(ConfigError, match="disagree"):
        ItemFusion(text=vectors(n=3), image=vectors(n=4))
    with pytest.raises(ConfigError, match="fusion mode"):
        ItemFusion(text=vectors(), image=None, mode="sum")


def test_marking_an_id_absent_leaves_the_content_path_only():
    fusion = ItemFusion(text=vectors(), image=None, n_id_items=12, out_dim=8, mode="gated").eval()
    content_only = ItemFusion(text=vectors(), image=None, out_dim=8, mode="gated").eval()
    with torch.no_grad():
        before = fusion(torch.tensor([2]))
        fusion.mark_id_absent(torch.tensor([2]))
        after = fusion(torch.tensor([2]))
        content_only.projections.load_state_dict(fusion.projections.state_dict())
        expected = content_only(torch.tensor([2]))
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, expected)  # the gate puts all weight on the content
