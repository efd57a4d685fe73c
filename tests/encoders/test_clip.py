"""The OpenCLIP wrapper: tiny config, loading paths, clear errors, real photos and the cache."""

import numpy as np
import pytest

from encoders.clip import ClipEncoder
from encoders.contrastive import ContrastiveConfig, retrieval_recall, train_contrastive
from encoders.errors import ConfigError, EncoderError
from simulations.datasets.synthetic import generate_world

TEXTS = ["a red mug", "a blue lamp with stripes", "budget green chair"]


@pytest.fixture(scope="module")
def encoder():
    return ClipEncoder(allow_random_init=True, seed=0)


@pytest.fixture(scope="module")
def catalog():
    return generate_world(n_items=96, n_users=10, seed=0).dataset.catalog


@pytest.fixture(scope="module")
def photos():
    skimage_data = pytest.importorskip("skimage.data")
    return [
        skimage_data.astronaut(),
        skimage_data.coffee(),
        skimage_data.chelsea(),
        skimage_data.camera(),
    ]


def test_tiny_config_builds_and_embeds_normalised_vectors(encoder):
    vectors = encoder.embed_texts(TEXTS)
    assert vectors.shape == (3, 64) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert encoder.embed_texts([]).shape == (0, 64)


def test_contrastive_loss_falls_within_a_few_steps(catalog):
    enc = ClipEncoder(allow_random_init=True, seed=1)
    images = [catalog.image(i) for i in range(catalog.n_items)]
    history = train_contrastive(
        enc, images, list(catalog.text), ContrastiveConfig(epochs=4, batch_size=32, lr=2e-3)
    )
    assert history[-1]["loss"] < 0.8 * history[0]["loss"]
    assert set(retrieval_recall(enc, images[:20], list(catalog.text[:20]))) == {
        "i2t_r@1",
        "i2t_r@10",
        "t2i_r@1",
        "t2i_r@10",
    }


def test_siglip_loss_needs_and_uses_a_logit_bias(catalog):
    images = [catalog.image(i) for i in range(32)]
    with pytest.raises(ConfigError, match="logit_bias"):
        train_contrastive(
            ClipEncoder(allow_random_init=True),
            images,
            list(catalog.text[:32]),
            ContrastiveConfig(epochs=1, loss="siglip"),
        )
    enc = ClipEncoder(allow_random_init=True, model_kwargs={"init_logit_bias": -10.0})
    history = train_contrastive(
        enc,
        images,
        list(catalog.text[:32]),
        ContrastiveConfig(epochs=2, batch_size=16, loss="siglip"),
    )
    assert np.isfinite(history[-1]["loss"])


def test_checkpoint_reloads_through_a_file_and_local_dir_with_identical_embeddings(
    encoder, photos, tmp_path
):
    before_text, before_img = encoder.embed_texts(TEXTS), encoder.embed_images(photos)
    from_file = ClipEncoder(
        "tandem-tiny-clip", pretrained=str(encoder.save_checkpoint(tmp_path / "w.pt"))
    )
    np.testing.assert_array_equal(from_file.embed_texts(TEXTS), before_text)
    np.testing.assert_array_equal(from_file.embed_images(photos), before_img)
    name = encoder.save_local_dir(tmp_path / "model")
    from_dir = ClipEncoder(name)
    np.testing.assert_array_equal(from_dir.embed_texts(TEXTS), before_text)
    np.testing.assert_array_equal(from_dir.embed_images(photos), before_img)
    assert from_dir.fingerprint() == encoder.fingerprint()


def test_missing_weights_give_a_clear_error_and_never_random(tmp_path):
    with pytest.raises(EncoderError, match=r"missing\.bin.*does not exist"):
        ClipEncoder("tandem-tiny-clip", pretrained=str(tmp_path / "missing.bin"))
    with pytest.raises(EncoderError, match="not in the local cache.*never downloads"):
        ClipEncoder("ViT-B-32", pretrained="laion2b_s34b_b79k")
    with pytest.raises(EncoderError, match="known tags"):
        ClipEncoder("ViT-B-32", pretrained="no_such_tag")
    with pytest.raises(EncoderError, match="has no weights"):
        ClipEncoder("tandem-tiny-clip")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "open_clip_config.json").write_text('{"model_cfg": {}}')
    with pytest.raises(EncoderError, match="no weights file"):
        ClipEncoder(f"local-dir:{tmp_path / 'empty'}")
    with pytest.raises(EncoderError, match="does not exist"):
        ClipEncoder(f"local-dir:{tmp_path / 'nowhere'}")
    with pytest.raises(EncoderError, match="unknown open_clip model"):
        ClipEncoder("no-such-model", allow_random_init=True)


def test_corrupt_checkpoint_names_the_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(EncoderError, match="bad.pt"):
        ClipEncoder("tandem-tiny-clip", pretrained=str(bad))


def test_real_photographs_go_through_the_full_image_path(encoder, photos):
    vectors = encoder.embed_images(photos)  # 512x512 RGB and a grayscale photo, resized to 32x32
    assert vectors.shape == (len(photos), 64)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert len({tuple(np.round(v, 5)) for v in vectors}) == len(
        photos
    )  # distinct photos, distinct vectors


def test_embedding_cache_is_hit_on_a_second_run(encoder, photos, tmp_path):
    path = encoder.save_checkpoint(tmp_path / "w.pt")
    first = ClipEncoder("tandem-tiny-clip", pretrained=str(path), cache_dir=tmp_path / "cache")
    a = first.embed_images(photos)
    first.embed_texts(TEXTS)
    assert first.encoder_calls == 2 and len(list((tmp_path / "cache").glob("*.npy"))) == 2
    second = ClipEncoder("tandem-tiny-clip", pretrained=str(path), cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(second.embed_images(photos), a)
    second.embed_texts(TEXTS)
    assert second.encoder_calls == 0  # no encoder work at all
    second.embed_texts(TEXTS + ["something new"])
    assert second.encoder_calls == 1  # other content, other key
