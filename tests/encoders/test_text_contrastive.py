"""Text-only contrastive training of the tiny CLIP's text tower on two views of each item's text."""

import numpy as np
import pytest

from encoders.clip import ClipEncoder
from encoders.contrastive import ContrastiveConfig, text_views, train_text_contrastive
from encoders.errors import ConfigError

GENRE_WORDS = {
    "horror": ["ghost", "blood", "night", "grave", "scream"],
    "comedy": ["laugh", "party", "silly", "wedding", "joke"],
    "western": ["horse", "desert", "sheriff", "gold", "saloon"],
    "space": ["star", "planet", "rocket", "alien", "orbit"],
}


def genre_catalog() -> tuple[list[str], np.ndarray]:
    """40 items in 4 genres: two title words from the genre's own words, then " | genre"."""
    rng = np.random.default_rng(0)
    texts, labels = [], []
    for code, (genre, words) in enumerate(GENRE_WORDS.items()):
        for j in range(10):
            first, second = rng.choice(words, 2, replace=False)
            texts.append(f"{first} {second} {j} | {genre}")
            labels.append(code)
    return texts, np.asarray(labels)


def test_text_views_split_title_from_the_rest_and_fall_back_to_the_category_name():
    texts = ["Toy Story | 1995 | Animation, Comedy", "Heat", "Alien | Horror"]
    titles, rests = text_views(texts, [0, 1, -1], ["Animation", "Action"])
    assert titles == ["Toy Story", "Heat", "Alien"]
    assert rests == ["1995 | Animation, Comedy", "Action", "Horror"]


def test_text_views_name_the_items_without_a_second_view():
    with pytest.raises(ConfigError, match=r"2 items .* first item index 1"):
        text_views(["A | x", "B", "C"], [-1, -1, -1], [])


def test_training_pulls_same_genre_titles_together_and_leaves_the_image_tower():
    texts, labels = genre_catalog()
    titles, rests = text_views(texts, labels, list(GENRE_WORDS))
    encoder = ClipEncoder(allow_random_init=True, seed=0)
    visual_before = {k: v.clone() for k, v in encoder.model.visual.state_dict().items()}

    def genre_gap() -> float:
        vectors = encoder.embed_texts(titles)
        sims = vectors @ vectors.T
        same = labels[:, None] == labels[None, :]
        off_diagonal = ~np.eye(len(titles), dtype=bool)
        return float(sims[same & off_diagonal].mean() - sims[~same].mean())

    before = genre_gap()
    history = train_text_contrastive(
        encoder, titles, rests, ContrastiveConfig(epochs=8, batch_size=20, lr=2e-3, seed=0)
    )
    assert len(history) == 8 and history[-1]["loss"] < history[0]["loss"]
    assert genre_gap() > before + 0.3
    for key, tensor in encoder.model.visual.state_dict().items():
        assert np.array_equal(tensor.numpy(), visual_before[key].numpy()), key


def test_text_training_needs_aligned_views():
    with pytest.raises(ConfigError, match="as many first views"):
        train_text_contrastive(ClipEncoder(allow_random_init=True), ["a", "b"], ["c"])
