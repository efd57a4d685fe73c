"""``mode=pipeline``: the whole chain (CLIP -> L1 over FAISS -> federated L2 -> two-tier) end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from ranking.errors import ConfigError
from serving.bundle import load_bundle
from simulations.report import format_value
from simulations.run import run

CONF = str(Path(__file__).resolve().parents[2] / "conf")
SMALL_CHAIN = [
    "dataset.n_items=150",
    "dataset.n_users=120",
    "encoder.epochs=2",
    "pipeline.l1.epochs=3",
    "pipeline.latency_requests=20",
    "fl.num_rounds=2",
    "fl.partition=users_per_client",
    "fl.users_per_client=27",
    "fl.fraction_train=1.0",
    "fl.heldout_fraction=0.2",
]


def composed(*overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_the_default_run_is_the_whole_chain():
    cfg = composed()
    assert (
        cfg.mode == "pipeline"
        and cfg.encoder.kind == "tiny_trained"
        and cfg.index.factory.startswith("HNSW")
    )


def test_pipeline_run_reports_every_tier(tmp_path, capsys):
    cap = "[{name:category_cap,max_per_category:2}]"  # the business's rule, and constrained's own
    overrides = [f"pipeline.hard_rules={cap}", f"rerankers.constrained.rules={cap}"]
    rows = run(
        composed(*SMALL_CHAIN, *overrides, f"paths.cache_dir={tmp_path / 'cache'}"),
        output_dir=tmp_path,
    )
    rerankers = [r for r in rows if "reranker" in r]
    rows = [r for r in rows if "system" in r]
    systems = [r["system"] for r in rows]
    assert (
        systems[0].startswith("L1 only")
        and systems[1].startswith("L2 full")
        and systems[2].startswith("two-tier")
    )
    l1, l2, two_tier = rows
    recall = l1["l1_recall@100"]
    # a two-tier hit is an L1 candidate: HR@10 can never exceed L1 recall@100
    assert recall > 0 and two_tier["hr@10"] <= recall + 1e-9
    assert all(0 <= r["ndcg@10"] <= r["hr@10"] <= 1 for r in rows)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["federated"]["rounds"] == 2 and saved["federated"]["bytes_up_per_round"] > 0
    assert saved["latency"]["requests"] == 20 and saved["latency"]["total_p99_ms"] > 0
    assert (tmp_path / "fl" / "best_model" / "manifest.json").exists()
    out = capsys.readouterr().out
    assert "two-tier" in out and "p99_ms" in out and "bytes_up_per_round" in out
    # the re-rankers: neural-only re-ranks nothing, so it equals the two-tier row
    by_name = {r["reranker"]: r for r in rerankers}
    assert {"neural", "rules", "blend", "blend_mmr", "cascade", "constrained"} <= set(by_name)
    assert by_name["neural"]["ndcg@10"] == pytest.approx(two_tier["ndcg@10"])
    assert by_name["constrained"]["violations"] == 0.0  # it applies the business's hard rule
    assert by_name["neural"]["violations"] > 0.0  # neural-only lists break it
    assert all(0 <= r["ild@10"] <= 2 and r["p99_ms"] > 0 for r in rerankers)
    assert saved["explanations"]["lines"] and "L1 rank" in saved["explanations"]["lines"][0]
    assert "re-rankers on the federated L2" in out
    # the run ends with its one-run report: a row and a latency row per re-ranker, examples, figures
    report = (tmp_path / "report.md").read_text()
    assert f"report: {tmp_path / 'report.md'}" in out
    latency = report.split("## Latency", 1)[1].split("\n## ", 1)[0]
    for name in by_name:
        assert f"| {name} | {by_name[name]['method']} | 1 |" in report
        rerank = report_cells(latency, name)[2]  # this re-ranker's own re-rank p99 (one seed)
        assert rerank == format_value(by_name[name]["rerank_p99_ms"])
    assert "## Why these items" in report and "| # | item | L1 rank | L2 score |" in report
    assert (tmp_path / "latency.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "frontier.png").exists() and (tmp_path / "rounds.png").exists()
    # the run's serving bundle answers a held-out-style request with the pipeline it evaluated
    bundle = load_bundle(saved["bundle"])
    assert sorted(bundle.rerankers) == sorted(by_name)
    served = bundle.pipeline_for("neural").recommend(np.array([0, 1, 2]), k=10)
    direct = bundle.pipeline.recommend(np.array([0, 1, 2]), k=10)
    assert list(served.items) == list(direct.items) and len(served.items) == 10


def report_cells(table: str, name: str) -> list[str]:
    """The cells after the name of ``name``'s row in a Markdown table."""
    line = next(row for row in table.splitlines() if row.startswith(f"| {name} |"))
    return [cell.strip() for cell in line.strip("|").split("|")][1:]


BAD_RERANKING = [
    ("rerankers.blend.weights.l2=abc", r"rerankers\.blend: .*must be a finite number"),
    ("rerankers.cascade.top_n=3", r"rerankers\.cascade: .*top_n 3 is below k=10"),
    ("rerankers.blend_mmr.rules=[{name:nope}]", r"rerankers\.blend_mmr: unknown rule 'nope'"),
    ("pipeline.hard_rules=[{name:popularity}]", r"pipeline\.hard_rules\[0\]: .*not a hard rule"),
    ("pipeline.compare_only=[neural,nope]", r"pipeline\.compare_only names unknown .*'nope'"),
    ("objective.reranker=blend", r"objective\.reranker='blend' is not among the compared"),
]


@pytest.mark.parametrize(("override", "message"), BAD_RERANKING, ids=[o for o, _ in BAD_RERANKING])
def test_a_bad_reranking_value_fails_before_anything_is_trained(
    override, message, tmp_path, monkeypatch
):
    import simulations.pipeline as pipeline_mode

    def trains(*args, **kwargs):
        raise AssertionError("a model was trained before the re-ranking config was checked")

    for name in ("content_parts", "simulate"):
        monkeypatch.setattr(pipeline_mode, name, trains)
    monkeypatch.setattr(pipeline_mode.TwoTowerRetriever, "fit", trains)
    only = ["pipeline.compare_only=[neural,rules]"] if override.startswith("objective") else []
    cfg = composed(*SMALL_CHAIN, *only, override, f"paths.cache_dir={tmp_path / 'cache'}")
    with pytest.raises(ConfigError, match=message):
        run(cfg, output_dir=tmp_path / "out")
    assert not (tmp_path / "cache" / "trained").exists() and not (tmp_path / "out").exists()


def test_pipeline_without_an_encoder_needs_id_vectors(tmp_path):
    without_encoder = [o for o in SMALL_CHAIN if not o.startswith("encoder.")]
    with pytest.raises(ConfigError, match="pipeline.l1.use_id=true"):
        run(
            composed(
                *without_encoder,
                "encoder=none",
                "pipeline.l1.use_id=false",
                f"paths.cache_dir={tmp_path}",
            ),
            output_dir=tmp_path,
        )


def test_a_pipeline_without_content_retrieves_by_id_and_measures_diversity_on_l1_vectors(
    tmp_path,
):
    """MovieLens has no images: encoder=none runs the chain with an ID-only L1, and ILD / MMR use
    the L1 item tower's vectors instead of CLIP's (the run says which)."""
    without_encoder = [o for o in SMALL_CHAIN if not o.startswith("encoder.")]
    rows = run(
        composed(*without_encoder, "encoder=none", f"paths.cache_dir={tmp_path / 'cache'}"),
        output_dir=tmp_path,
    )
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["diversity_vectors"].startswith("L1 item-tower")
    rerankers = {r["reranker"]: r for r in rows if "reranker" in r}
    assert {"neural", "blend_mmr"} <= set(rerankers)
    assert all(0 < r["ild@10"] <= 2 for r in rerankers.values())
    assert load_bundle(saved["bundle"]).pipeline.recommend(np.array([0, 1]), k=5).items.size == 5


def test_a_second_run_reuses_the_trained_models_and_only_re_ranks(tmp_path, monkeypatch):
    import simulations.pipeline as pipeline_mode

    chain = [*SMALL_CHAIN, f"paths.cache_dir={tmp_path / 'cache'}"]
    first = run(composed(*chain), output_dir=tmp_path / "a")

    def no_training(*args, **kwargs):
        raise AssertionError("the federated L2 was trained again")

    monkeypatch.setattr(pipeline_mode, "simulate", no_training)
    monkeypatch.setattr(pipeline_mode.TwoTowerRetriever, "fit", no_training)
    again = run(
        composed(*chain, "rerankers.blend.weights.popularity=0.5"), output_dir=tmp_path / "b"
    )
    accuracy = lambda rows: [(r["system"], r["ndcg@10"]) for r in rows if "system" in r]  # noqa: E731
    assert accuracy(again) == accuracy(first)
    blend = lambda rows: next(r for r in rows if r.get("reranker") == "blend")  # noqa: E731
    assert (tmp_path / "b" / "fl" / "best_model" / "manifest.json").exists()
    assert blend(again)["reranker"] == "blend"
    with pytest.raises(AssertionError, match="trained again"):  # a training setting is a new key
        run(composed(*chain, "fl.num_rounds=3"), output_dir=tmp_path / "c")
