"""Bundles: written atomically, verified on load, built only from tandem's own parts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from builders import rule_log

from ranking.errors import ConfigError, DataError
from ranking.two_tower import TwoTowerRetriever
from serving.bundle import export_bundle, load_bundle
from serving.config import load_service_config
from serving.state import Service
from tests.serving.bundles import RERANKERS, tiny_catalog


def test_a_loaded_bundle_retrieves_what_the_exported_retriever_did(tmp_path: Path):
    log = rule_log(60, n_users=40)
    retriever = TwoTowerRetriever(
        n_items=60,
        text=np.random.default_rng(0).normal(size=(60, 8)),
        dim=8,
        train={"epochs": 2, "max_len": 10},
        index={"factory": "Flat"},
    ).fit(log)
    path = export_bundle(
        tmp_path / "b",
        retriever=retriever,
        l2_checkpoint=None,
        catalog=tiny_catalog(),
        popularity=log.item_counts(),
        rerankers=RERANKERS,
        n_candidates=20,
    )
    bundle = load_bundle(path)
    sequences = log.sequences()
    histories = [np.array(sequences[u][:5]) for u in range(10)]
    expected = retriever.retrieve(histories, 20, exclude_seen=False)
    got = bundle.pipeline.candidates(histories)
    overlap = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(expected, got, strict=True)])
    assert overlap >= 0.95  # same towers, same exact index: the same candidates (ties aside)
    assert len(bundle.version) == 12  # derived from the files' checksums
    assert sorted(bundle.rerankers) == sorted(RERANKERS)


def test_partial_and_corrupt_bundles_are_refused_with_the_file_named(bundles, tmp_path: Path):
    partial = shutil.copytree(bundles["v1"], tmp_path / "partial")
    (partial / "l1" / "towers.pt").unlink()
    with pytest.raises(DataError, match="towers.pt.*missing"):
        load_bundle(partial)
    with pytest.raises(DataError, match="checksum mismatch for 'l2/weights.pt'"):
        load_bundle(bundles["corrupt"])
    no_manifest = shutil.copytree(bundles["v1"], tmp_path / "no-manifest")
    (no_manifest / "manifest.json").unlink()
    with pytest.raises(DataError, match="partial"):
        load_bundle(no_manifest)


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda s: s["l1"].update(_target_="os.system"), "spec.l1._target_"),
        (lambda s: s.update(loader="pickle.loads"), "spec.loader"),
        (
            lambda s: s["rerankers"].update(evil={"name": "os.system"}),
            "unknown reranker 'os.system'",
        ),
        (lambda s: s["l1"].update(session_model="builtins.eval"), "unknown sequence model"),
    ],
    ids=["target-in-l1", "unknown-spec-key", "reranker-not-registered", "model-not-registered"],
)
def test_a_bundle_spec_builds_only_tandems_own_parts(bundles, tmp_path: Path, edit, says):
    path = shutil.copytree(bundles["v1"], tmp_path / "edited")
    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest["spec"])
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=says):
        load_bundle(path)


def test_a_failed_export_leaves_nothing_behind(tmp_path: Path):
    retriever = TwoTowerRetriever(n_items=60, dim=8, index={"factory": "Flat"})
    retriever.build_index()
    with pytest.raises(OSError):
        export_bundle(
            tmp_path / "b",
            retriever=retriever,
            l2_checkpoint=tmp_path / "no-such-checkpoint",
            catalog=tiny_catalog(),
            popularity=np.ones(60),
            rerankers=RERANKERS,
        )
    assert list(tmp_path.iterdir()) == []


def test_a_bundle_missing_a_variants_reranker_is_refused(bundles, tmp_path: Path):
    config = load_service_config(
        None,
        [
            f"event_log={tmp_path / 'events.log'}",
            "ab.variants=[{name: a, share: 1.0, reranker: mmr}]",
        ],
    )
    with pytest.raises(DataError, match="lacks the re-rankers \\['mmr'\\]"):
        Service(bundles["v1"], config)


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("sessions.colour=red", "unknown key 'sessions.colour'"),
        ("workers=0", "workers must be a positive integer"),
        ("sessions.kind=disk", "sessions.kind must be 'memory' or 'redis'"),
        ("ab.variants=[{name: a, share: 0.7}]", "shares must sum to 1"),
        ("limits.max_k=many", "limits.max_k"),
    ],
)
def test_bad_service_settings_name_the_key(bundles, tmp_path: Path, override, says):
    with pytest.raises(ConfigError, match=says):
        config = load_service_config(None, [f"event_log={tmp_path / 'e.log'}", override])
        Service(bundles["v1"], config)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--bundle", "/no/such/bundle"], "/no/such/bundle"),
        (["--bundle", "{v1}", "sessions.colour=red"], "unknown key 'sessions.colour'"),
        (["--bundle", "{v1}", "port"], "not key=value"),
    ],
)
def test_tandem_serve_exits_2_naming_a_bad_bundle_or_setting(bundles, tmp_path, args, says):
    import subprocess
    import sys

    args = [a.format(v1=bundles["v1"]) for a in args] + [f"event_log={tmp_path / 'e.log'}"]
    done = subprocess.run(
        [sys.executable, "-m", "serving.cli", *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and says in done.stderr, done.stderr
