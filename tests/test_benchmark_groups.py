"""The DP group of ``benchmarks/fl_vs_central.py``: private-only settings reach the private runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.support.fl_experiment_groups import (  # noqa: E402
    ATTRIBUTES_SUFFIX,
    DP_CLIP,
    experiments,
)
from fl.settings import FederatedSettings  # noqa: E402
from ranking.errors import ConfigError  # noqa: E402


def _base() -> FederatedSettings:
    return FederatedSettings.create(strategy={"name": "fedadam", "eta": 0.002})


def test_dp_overrides_reach_the_private_runs_only() -> None:
    overrides = {"local-epochs": "2", "strategy.fedadam.beta-1": "0.95"}
    planned = experiments("dp", _base(), (0.5, 0.7), dp_overrides=overrides)
    (reference, ref_settings, _), *private = planned
    assert ref_settings.local_epochs == 1 and ref_settings.strategy.settings.beta_1 == 0.9
    assert ref_settings.dp_noise_multiplier == 0.0
    assert [m for m, _, _ in private] == [
        "dp sigma 0.5 local-epochs 2 strategy.fedadam.beta-1 0.95",
        "dp sigma 0.7 local-epochs 2 strategy.fedadam.beta-1 0.95",
    ]
    for (_, settings, ref), sigma in zip(private, (0.5, 0.7), strict=True):
        assert ref == reference and reference.endswith(
            "local-epochs 2 strategy.fedadam.beta-1 0.95"
        )
        assert settings.local_epochs == 2 and settings.strategy.settings.beta_1 == 0.95
        assert settings.dp_noise_multiplier == sigma and settings.dp_clipping_norm == DP_CLIP
        assert settings.strategy.settings.eta == 0.002  # the rest of the base is kept


def test_an_unknown_dp_override_names_the_key() -> None:
    with pytest.raises(ConfigError, match="local_epoch"):
        experiments("dp", _base(), (0.5,), dp_overrides={"local-epoch": "2"})


def test_sigma_zero_is_the_private_settings_without_dp_and_their_reference() -> None:
    planned = experiments("dp", _base(), (0.5, 0.0), dp_overrides={"local-epochs": "2"})
    (reference, _, _), (method, settings, ref), (private, _, private_ref) = planned
    assert method == "non-private local-epochs 2" and ref == reference
    assert not settings.dp_enabled and settings.local_epochs == 2
    assert settings.client_sampling == planned[0][1].client_sampling == "poisson"
    assert private == "dp sigma 0.5 local-epochs 2" and private_ref == method


def test_without_the_default_reference_the_private_runs_still_compare_with_sigma_zero() -> None:
    planned = experiments(
        "dp", _base(), (0.5, 0.0), dp_overrides={"local-epochs": "2"}, dp_reference=False
    )
    assert [(m, ref) for m, _, ref in planned] == [
        ("non-private local-epochs 2", ""),
        ("dp sigma 0.5 local-epochs 2", "non-private local-epochs 2"),
    ]
    # without sigma 0 the default recipe is the only reference, so it is kept
    kept = experiments("dp", _base(), (0.5,), dp_reference=False)
    assert [ref for _, _, ref in kept] == ["", kept[0][0]]


def test_synthetic_world_names_give_their_users_and_others_are_refused(tmp_path) -> None:
    from benchmarks.fl_vs_central import dataset_file, world_users

    assert world_users("synthetic") == 1_000
    assert world_users("synthetic20k") == 20_000 and world_users("synthetic50k") == 50_000
    with pytest.raises(SystemExit, match="synthetic20x"):
        world_users("synthetic20x")
    with pytest.raises(SystemExit, match="movielens"):  # not read as ML-100K
        dataset_file("movielens", tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("content_vectors", "named"),
    [
        ("", "dp sigma 0.5"),
        ("/w/synthetic20k-content.npy", "dp sigma 0.5 content-input"),
        ("/w/synthetic20k-attributes.npy", "dp sigma 0.5 attribute-input"),
    ],
)
def test_the_content_input_is_named_by_its_kind(content_vectors, named) -> None:
    base = _base().replace(content_vectors=content_vectors)
    (_, _, _), (method, settings, _) = experiments("dp", base, (0.5,))
    assert method == named and settings.content_vectors == content_vectors


def test_the_attribute_file_holds_the_catalogs_one_hot_attributes(tmp_path) -> None:
    import numpy as np

    from benchmarks.fl_vs_central import attribute_file
    from ranking.data.attribute_vectors import attribute_vectors
    from ranking.storage import load_dataset

    path = attribute_file("synthetic", tmp_path)
    assert path.name.endswith(ATTRIBUTES_SUFFIX)
    catalog = load_dataset(tmp_path / "synthetic.npz").catalog
    assert np.array_equal(np.load(path), attribute_vectors(catalog))
