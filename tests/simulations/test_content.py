"""Content vectors for a run's catalog from the encoder/ group, trained once then cached."""

import numpy as np
import pytest

import simulations.content as content
from ranking.data.catalog import Catalog
from ranking.errors import ConfigError
from simulations.datasets.synthetic import generate_world

TINY = {
    "kind": "tiny_trained",
    "modalities": ["text", "image"],
    "epochs": 1,
    "lr": 0.002,
    "seed": 0,
}


def test_tiny_clip_is_trained_once_and_its_vectors_come_from_the_cache(tmp_path, monkeypatch):
    catalog = generate_world(n_items=40, n_users=10).dataset.catalog
    first = content.content_vectors(TINY, catalog, tmp_path)
    assert first.shape == (40, 128)  # 64-d text + 64-d image

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of loading the cached weights")

    monkeypatch.setattr(content, "train_contrastive", no_training)
    np.testing.assert_array_equal(content.content_vectors(TINY, catalog, tmp_path), first)
    text_only = content.content_vectors({**TINY, "modalities": ["text"]}, catalog, tmp_path)
    np.testing.assert_array_equal(text_only, first[:, :64])


def test_none_and_bad_encoder_settings(tmp_path):
    catalog = Catalog(ids=["a", "b"], text=["x", "y"], category=[-1, -1], category_names=())
    assert content.content_vectors({"kind": "none"}, catalog, tmp_path) is None
    with pytest.raises(ConfigError, match="no images"):
        content.content_vectors(
            {"kind": "openclip", "model": "ViT-B-32", "modalities": ["image"]}, catalog, tmp_path
        )
    with pytest.raises(ConfigError, match="subset"):
        content.content_vectors(
            {"kind": "tiny_trained", "modalities": ["audio"]}, catalog, tmp_path
        )
    with pytest.raises(ConfigError, match="encoder.kind"):
        content.content_vectors({"kind": "bert"}, catalog, tmp_path)


TINY_TEXT = {"kind": "tiny_text", "modalities": ["text"], "epochs": 2, "batch_size": 8, "seed": 0}


def test_tiny_text_is_trained_once_on_text_alone_and_then_loaded(tmp_path, monkeypatch):
    catalog = Catalog(
        ids=[str(i) for i in range(12)],
        text=[f"film {i} | {'Comedy' if i % 2 else 'Drama'}" for i in range(11)] + ["no genre"],
        category=[i % 2 for i in range(12)],
        category_names=("Drama", "Comedy"),
    )
    first = content.content_parts(TINY_TEXT, catalog, tmp_path)
    assert list(first) == ["text"] and first["text"].shape == (12, 64)
    assert len(list((tmp_path / "encoders").glob("tiny-text-*.pt"))) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of loading the cached weights")

    monkeypatch.setattr(content, "train_text_contrastive", no_training)
    (tmp_path / "embeddings").rename(tmp_path / "old-embeddings")  # the checkpoint must embed
    second = content.content_parts(TINY_TEXT, catalog, tmp_path)
    np.testing.assert_allclose(second["text"], first["text"], atol=1e-5)
    with pytest.raises(ConfigError, match="text only"):
        content.content_parts({**TINY_TEXT, "modalities": ["text", "image"]}, catalog, tmp_path)
