"""Federated against centralized training, robustness, drops and DP, with confidence intervals.

Every federated run goes through Flower's Simulation Runtime (``simulations.flower_sim``) with the
real ServerApp / ClientApp, one user per client and ``--fraction`` of the clients per round. The
central reference trains the same model on the same (non-held-out) users with early stopping, and
both are evaluated on the same held-out users (leave-one-out test target, full ranking).

Every row gives the last round's test NDCG@10 with a 95% bootstrap interval over the held-out users
(``ndcg@10_ci``: half its width), and rows compared with a reference run (``ref``) give the paired
relative difference ``ndcg@10_vs_ref`` with its 95% bootstrap interval over the same users.

Datasets: ``synthetic`` (the default world, 1,000 users), ``synthetic20k`` (20,000 users, for
privacy and small effects; any ``synthetic<N>k`` gives N thousand users of the same world, e.g.
``synthetic50k`` for DP with more users per round), ``ml100k`` (``../shared/data/ml-100k``).

Groups (``--groups``):

* ``accuracy``: central vs federated dense / row-sparse / row-sparse int8 / dense int8;
* ``drops``: 20% of the sampled clients crashing every round, against the same run without;
* ``byzantine``: 10% Byzantine clients, sign-flip scaled by -5 and "a little is enough", under the
  plain recipe and with robust aggregators before FedAdam, each against the clean run;
* ``dp``: DP-FedAdam (Poisson sampling, clipping, Gaussian noise) at three noise levels, with
  epsilon at delta 1e-6 from dp-accounting, against the same run without DP.

    .venv/bin/python benchmarks/fl_vs_central.py --datasets synthetic --groups accuracy --rounds 100

Writes ``benchmarks/results/fl_vs_central.json`` (rows of other runs already there are kept).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.support.fl_experiment_groups import (  # noqa: E402
    ATTRIBUTES_SUFFIX,
    experiments,
    schedule_suffix,
)
from fl.server_app import FINAL_MODEL, best_round, read_rounds  # noqa: E402
from fl.settings import FederatedSettings  # noqa: E402
from fl.task import task_content, task_data  # noqa: E402
from ranking.evaluation import query_ranks  # noqa: E402
from ranking.metrics import bootstrap_ci, hit_rate, ndcg  # noqa: E402
from ranking.recommender import SequenceRecommender, load_recommender  # noqa: E402
from ranking.storage import save_dataset  # noqa: E402
from simulations.flower_sim import simulate  # noqa: E402
from simulations.report import print_table, write_results  # noqa: E402

MACHINE = f"{platform.machine()}, {os.cpu_count()} cores"
RESAMPLES = 1000


def world_users(name: str) -> int:
    """Users of a synthetic world name: ``synthetic`` 1,000, ``synthetic<N>k`` N thousand."""
    match = re.fullmatch(r"synthetic(?:(\d+)k)?", name)
    if match is None:
        raise SystemExit(f"--datasets: {name!r} is not synthetic, synthetic<N>k or ml100k")
    return int(match.group(1)) * 1000 if match.group(1) else 1_000


def dataset_file(name: str, workdir: Path) -> Path:
    path = workdir / f"{name}.npz"
    if not path.exists():
        if name == "ml100k":
            from simulations.datasets.recbole import read_recbole_atomic

            save_dataset(read_recbole_atomic(ROOT.parent / "shared" / "data" / "ml-100k"), path)
        else:  # a synthetic world; any other name is refused, naming it
            from simulations.datasets.synthetic import generate_world

            save_dataset(generate_world(n_users=world_users(name)).dataset, path)
    return path


def content_file(name: str, workdir: Path) -> Path:
    """The catalog's content vectors (tiny CLIP trained on the items' images and titles, as
    ``encoder=tiny_trained`` with seed 0; cached under ``.cache/tandem``) as a ``.npy`` file.

    Computed in a spawned process, which keeps open_clip and its threads out of this one (it
    forks Ray's processes for every simulation)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    path = workdir / f"{name}-content.npy"
    if not path.exists():
        data = dataset_file(name, workdir)
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            pool.submit(_write_content_vectors, data, path).result()
    return path


def attribute_file(name: str, workdir: Path) -> Path:
    """The one-hot blocks of the catalog's categorical attributes as a ``.npy`` file, named so
    that runs using it are told apart (:data:`ATTRIBUTES_SUFFIX`)."""
    from ranking.data.attribute_vectors import write_attribute_vectors

    path = workdir / f"{name}{ATTRIBUTES_SUFFIX}"
    if not path.exists():
        write_attribute_vectors(dataset_file(name, workdir), path)
    return path


def _write_content_vectors(data: Path, path: Path) -> None:
    import yaml

    from ranking.storage import load_dataset
    from simulations.content import content_vectors

    cfg = yaml.safe_load((ROOT / "conf" / "encoder" / "tiny_trained.yaml").read_text())
    cfg["seed"] = 0
    catalog = load_dataset(data).catalog
    np.save(path, content_vectors(cfg, catalog, ROOT / ".cache" / "tandem"))


def with_ci(row: dict, ranks: np.ndarray) -> dict:
    low, high = bootstrap_ci(ranks, ndcg, 10, resamples=RESAMPLES)
    row.update({"ndcg@10_ci": (high - low) / 2, "ndcg@10_ci_low": low, "ndcg@10_ci_high": high})
    return row


def paired_difference(ranks: np.ndarray, ref: np.ndarray) -> dict:
    """Relative NDCG@10 difference to the reference on the same users, with a paired bootstrap."""
    gain = np.where(ranks < 10, 1.0 / np.log2(ranks + 2.0), 0.0)
    base = np.where(ref < 10, 1.0 / np.log2(ref + 2.0), 0.0)
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, len(gain), len(gain)) for _ in range(RESAMPLES)]
    stats = np.array([gain[d].mean() / max(base[d].mean(), 1e-12) - 1 for d in draws])
    low, high = np.quantile(stats, [0.025, 0.975])
    return {
        "ndcg@10_vs_ref": gain.mean() / max(base.mean(), 1e-12) - 1,
        "ndcg@10_vs_ref_ci_low": float(low),
        "ndcg@10_vs_ref_ci_high": float(high),
    }


def central_row(name: str, settings: FederatedSettings) -> tuple[dict, np.ndarray]:
    data = task_data(settings)
    t0 = time.perf_counter()
    spec = settings.model.with_train(progress=False, seed=settings.seed)
    # the same content input as the federated runs (a content-initialised table is theirs only)
    content = task_content(settings, data.dataset.catalog.n_items)
    model = SequenceRecommender.from_spec(spec, content=content)
    model.fit(data.train, validation=data.heldout)
    ranks = query_ranks(model, data.heldout, "test")
    row = {
        "dataset": name,
        "method": "central",
        "setting": f"{settings.model.kind}, early stopping",
        "hr@10": hit_rate(ranks, 10),
        "ndcg@10": ndcg(ranks, 10),
        "rounds_or_epochs": model.best_epoch,
        "seconds": time.perf_counter() - t0,
    }
    return with_ci(row, ranks), ranks


def describe(settings: FederatedSettings, n_clients: int) -> str:
    spec = settings.strategy
    eta = getattr(spec.settings, "eta", None)
    parts = [
        f"{spec.name}" + (f" eta {eta:g}" if eta is not None else "") + schedule_suffix(settings),
        f"E={settings.local_epochs}",
        f"{settings.update_encoding}/{settings.quantize}",
        f"{settings.num_rounds} rounds",
        f"{settings.fraction_train:.1%} of {n_clients} clients"
        + (" (Poisson)" if settings.poisson_sampling else ""),
    ]
    if not settings.order_nodes_by_partition:
        parts.append("nodes not ordered by partition")
    if settings.heldout_fraction != FederatedSettings.heldout_fraction:
        parts.append(f"{settings.heldout_fraction:.0%} of users held out")
    if settings.robust_aggregator != "none":
        parts.append(f"robust {settings.robust_aggregator}")
        if settings.robust_clip_start != "median":
            parts.append(f"clip start {settings.robust_clip_start}")
    if settings.byzantine_fraction:
        parts.append(
            f"{settings.byzantine_fraction:.0%} byzantine {settings.byzantine_mode} "
            f"x{settings.byzantine_factor:g}"
        )
    if settings.drop_fraction:
        parts.append(f"{settings.drop_fraction:.0%} drop")
    if settings.over_selection > 1:
        parts.append(
            f"{settings.over_selection:g}x over-selection, first {settings.sample_size(n_clients)} valid replies"
        )
    if settings.dp_enabled:
        parts.append(
            f"DP sigma {settings.dp_noise_multiplier:g} clip {settings.dp_clipping_norm:g}"
        )
    return ", ".join(parts)


def federated_row(name: str, method: str, settings: FederatedSettings) -> tuple[dict, np.ndarray]:
    data = task_data(settings)
    n_clients = data.partition.n_clients
    t0 = time.perf_counter()
    simulate(settings, num_supernodes=n_clients)
    wall = time.perf_counter() - t0
    run_dir = Path(settings.run_dir)
    rows = read_rounds(run_dir)
    trained = [r for r in rows if r["round"] > 0]
    last = [r for r in rows if "ndcg@10" in r][-1]
    best = best_round(rows) or last
    ranks = query_ranks(load_recommender(run_dir / FINAL_MODEL), data.heldout, "test")
    updates = sum(r["accepted"] for r in trained)
    row = {
        "dataset": name,
        "method": method,
        "setting": describe(settings, n_clients),
        "hr@10": hit_rate(ranks, 10),
        "ndcg@10": ndcg(ranks, 10),
        "rounds_or_epochs": last["round"],
        # model selection as central early stopping does: the round with the best validation NDCG@10
        "best_round": best["round"],
        "ndcg@10_best_val": best["ndcg@10"],
        "bytes_per_round": sum(r["bytes_up"] for r in trained) / max(1, len(trained)),
        "bytes_down_per_round": sum(r["bytes_down"] for r in trained) / max(1, len(trained)),
        "updates_per_s": updates / max(1e-9, sum(r["seconds"] for r in trained)),
        "dropped": sum(r["dropped"] for r in trained),
        "rejected": sum(r["rejected"] for r in trained),
        "heldout_users": len(ranks),
        "seconds": wall,
    }
    if "epsilon" in last:
        row["epsilon"] = last["epsilon"]
        row["delta"] = last["delta"]
        # runs before fl.dp_accountant existed were accounted with RDP
        row["dp_accountant"] = last.get("dp_accountant", "rdp")
    return with_ci(row, ranks), ranks


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """``["key=value", ...]`` -> ``{key: value}``; a pair without ``=`` stops the run naming it."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--dp-set: expected KEY=VALUE, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["synthetic"])
    parser.add_argument("--groups", nargs="+", default=["accuracy"])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--no-central", action="store_true")
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--eta", type=float, default=0.002, help="FedAdam server step size")
    parser.add_argument(
        "--heldout-fraction",
        type=float,
        default=0.1,
        help="share of users held out for evaluation (more users resolve smaller differences)",
    )
    parser.add_argument(
        "--eta-schedule",
        choices=["constant", "cosine"],
        default="constant",
        help="FedAdam's server step over the rounds (every run): constant, or cosine to 0",
    )
    parser.add_argument(
        "--eta-warmup", type=int, default=0, help="rounds of linear warm-up of the server step"
    )
    parser.add_argument(
        "--dp-sigmas",
        nargs="+",
        type=float,
        default=[0.5, 0.7, 1.0],
        help="noise multipliers of the dp group (0: the private runs' settings without DP, then the "
        "reference of the private runs)",
    )
    parser.add_argument(
        "--dp-tau",
        type=float,
        default=None,
        help="FedAdam's tau for the dp group's private runs (default: the base strategy's)",
    )
    parser.add_argument(
        "--dp-hidden",
        type=int,
        default=None,
        help="the model's hidden size for the dp group's private runs (default: the base model's)",
    )
    parser.add_argument(
        "--dp-freeze-item-table",
        action="store_true",
        help="the dp group's private runs keep the item table fixed (out of the private release)",
    )
    parser.add_argument(
        "--dp-set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="run-config settings of the dp group's private runs only, e.g. local-epochs=2 "
        "strategy.fedadam.beta-1=0.95 (the reference keeps the base's)",
    )
    parser.add_argument(
        "--item-table-init",
        choices=["random", "content"],
        default="random",
        help="round 0's item table: random, or the PCA of the catalog's tiny-CLIP content vectors "
        "(encoder=tiny_trained, trained on the items' images and titles; public data)",
    )
    parser.add_argument(
        "--content-vectors",
        nargs="?",
        const="clip",
        choices=["clip", "attributes"],
        default=None,
        help="every run's model also gets a content input (fl.content_vectors: ID rows plus a "
        "learned projection of the content): the catalog's tiny-CLIP vectors (clip, the default), "
        "or the one-hot blocks of its categorical attributes (attributes: "
        "ranking.data.attribute_vectors, a learned embedding per attribute value)",
    )
    parser.add_argument(
        "--dp-no-default-reference",
        action="store_true",
        help="with 0 among --dp-sigmas, skip the run of the default recipe (the private runs are "
        "still compared with the same settings without DP)",
    )
    parser.add_argument(
        "--methods", nargs="*", default=None, help="run only these methods of the groups"
    )
    parser.add_argument(
        "--order-nodes",
        action="store_true",
        help="order the larger worlds' nodes by partition id too (reproducible, paired runs; one "
        "query per node first, about 26 s for 18,000 nodes on 2 cores)",
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="fl-bench-"))
    rows: list[dict] = []
    for name in args.datasets:
        base = FederatedSettings.create(
            data_path=str(dataset_file(name, workdir)),
            num_rounds=args.rounds,
            fraction_train=args.fraction,
            heldout_fraction=args.heldout_fraction,
            partition="one_user_per_client",
            eval_every=args.eval_every,
            update_encoding="row-sparse",
            quantize="int8",
            strategy={
                "name": "fedadam",
                "eta": args.eta,
                "eta_schedule": args.eta_schedule,
                "eta_warmup_rounds": args.eta_warmup,
            },
            # ordering 18,000 simulated nodes by partition id costs one query message each before
            # round 1 (it did not finish in 10 min with Flower's dispatcher): unordered by default
            order_nodes_by_partition=name in ("synthetic", "ml100k") or args.order_nodes,
        )
        if args.item_table_init == "content":
            base = base.replace(item_table_init=str(content_file(name, workdir)))
        if args.content_vectors == "clip":
            base = base.replace(content_vectors=str(content_file(name, workdir)))
        elif args.content_vectors == "attributes":
            base = base.replace(content_vectors=str(attribute_file(name, workdir)))
        ranks: dict[str, np.ndarray] = {}
        if not args.no_central:
            row, ranks["central"] = central_row(name, base)
            rows.append(row)
            print(row, flush=True)
        for group in args.groups:
            planned = experiments(
                group,
                base,
                tuple(args.dp_sigmas),
                args.dp_tau,
                args.dp_hidden,
                args.dp_freeze_item_table,
                parse_overrides(args.dp_set),
                dp_reference=not args.dp_no_default_reference,
            )
            wanted = set(args.methods or [m for m, _, _ in planned])
            wanted |= {ref for m, _, ref in planned if m in wanted and ref}
            for method, settings, ref in planned:
                if method in ranks or method not in wanted:
                    continue
                run_dir = workdir / f"{name}-{method.replace(' ', '_').replace('%', 'pct')}"
                row, ranks[method] = federated_row(
                    name, method, settings.replace(run_dir=str(run_dir))
                )
                if ref and ref in ranks:
                    row.update(paired_difference(ranks[method], ranks[ref]))
                    # the reference run of this invocation: a later run of the same reference
                    # replaces its row in the results file, so each compared row keeps its own
                    row["ref_ndcg@10"] = ndcg(ranks[ref], 10)
                    row["reference"] = ref
                row["machine"] = MACHINE
                rows.append(row)
                print(row, flush=True)
    cols = [
        "dataset",
        "method",
        "ndcg@10",
        "ndcg@10_ci",
        "ndcg@10_vs_ref",
        "ndcg@10_vs_ref_ci_low",
        "ndcg@10_vs_ref_ci_high",
        "updates_per_s",
        "epsilon",
        "seconds",
    ]
    print_table(
        "Federated vs central (held-out users, leave-one-out test, full ranking)", rows, cols
    )
    out = ROOT / "benchmarks" / "results" / "fl_vs_central.json"
    write_results(out, rows)
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
