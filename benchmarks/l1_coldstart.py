"""L1 recall of the true next item, warm and cold-start, by item representation.

On the synthetic world (temporal split: the last 10% of time is test, and the late-created items
are cold because nobody touched them in training):

1. train the tiny CLIP contrastively on the catalog's (image, title) pairs and report image→text and
   text→image R@1 / R@10 on held-out items before and after;
2. train a two-tower L1 retriever with ID-only, text-only, image-only and fused item vectors, and
   report recall@100 / @500 for warm and cold targets through a FAISS index.

On ML-100K (if ``../shared/data/ml-100k`` exists): text-only (titles + genres through the CLIP text
tower) against ID-only, leave-one-out.

    .venv/bin/python benchmarks/l1_coldstart.py [--epochs 20] [--clip-epochs 15]

Writes ``benchmarks/results/l1_coldstart.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from encoders.clip import ClipEncoder  # noqa: E402
from encoders.contrastive import ContrastiveConfig, retrieval_recall, train_contrastive  # noqa: E402
from ranking.data.splits import leave_one_out, temporal_split  # noqa: E402
from ranking.two_tower import TwoTowerRetriever, l1_recall  # noqa: E402
from simulations.datasets.synthetic import generate_world  # noqa: E402
from simulations.report import print_table  # noqa: E402

MACHINE = f"{platform.machine()}, {os.cpu_count()} cores"


def two_tower_rows(dataset_name, split, n_items, variants, epochs, groups, seed):
    rows = []
    for method, kwargs in variants.items():
        t0 = time.perf_counter()
        retriever = TwoTowerRetriever(
            n_items=n_items, model={"n_blocks": 1}, train={"epochs": epochs, "seed": seed}, **kwargs
        ).fit(split.train)
        result = l1_recall(retriever, split, "test", ks=(100, 500), groups=groups)
        rows.append(
            {
                "dataset": dataset_name,
                "method": method,
                "setting": f"two-tower sasrec, {epochs} epochs",
                **{k: round(v, 4) for k, v in result.items()},
                "train_seconds": round(time.perf_counter() - t0, 1),
                "machine": MACHINE,
            }
        )
        print(rows[-1], flush=True)
    return rows


def synthetic(args) -> tuple[list[dict], list[dict]]:
    world = generate_world(cold_start_fraction=0.2, cold_start_after=0.9, seed=args.seed)
    ds = world.dataset
    catalog = ds.catalog
    split = temporal_split(ds.interactions, valid_fraction=0.05, test_fraction=0.1)
    cold = split.train.item_counts() == 0
    images = [catalog.image(i) for i in range(catalog.n_items)]
    texts = list(catalog.text)
    perm = np.random.default_rng(args.seed).permutation(catalog.n_items)
    train_items, held_out = perm[: int(0.8 * len(perm))], perm[int(0.8 * len(perm)) :]
    encoder = ClipEncoder(allow_random_init=True, seed=args.seed)
    pick = lambda idx, xs: [xs[i] for i in idx]  # noqa: E731
    clip_rows = [
        {
            "dataset": "synthetic",
            "method": "tiny-clip",
            "setting": "random init",
            **retrieval_recall(encoder, pick(held_out, images), pick(held_out, texts)),
        }
    ]
    t0 = time.perf_counter()
    history = train_contrastive(
        encoder,
        pick(train_items, images),
        pick(train_items, texts),
        ContrastiveConfig(epochs=args.clip_epochs, lr=2e-3, seed=args.seed),
    )
    clip_rows.append(
        {
            "dataset": "synthetic",
            "method": "tiny-clip",
            "setting": f"ClipLoss, {args.clip_epochs} epochs on {len(train_items)} items",
            **retrieval_recall(encoder, pick(held_out, images), pick(held_out, texts)),
            "final_loss": history[-1]["loss"],
            "train_seconds": time.perf_counter() - t0,
        }
    )
    for row in clip_rows:
        row["machine"] = MACHINE
    text, image = encoder.embed_texts(texts), encoder.embed_images(images)
    variants = {
        "id-only": {"use_id": True},
        "text-only": {"text": text, "use_id": False},
        "image-only": {"image": image, "use_id": False},
        "fused (text+image)": {"text": text, "image": image, "use_id": False},
        "fused (text+image+id)": {"text": text, "image": image, "use_id": True},
        "fused (text+image+id), id-dropout 0.5": {
            "text": text,
            "image": image,
            "use_id": True,
            "fusion": {"id_dropout": 0.5},
        },
    }
    rows = two_tower_rows(
        "synthetic (temporal)",
        split,
        catalog.n_items,
        variants,
        args.epochs,
        {"warm": ~cold, "cold": cold},
        args.seed,
    )
    return clip_rows, rows


def movielens(args) -> list[dict]:
    directory = ROOT.parent / "shared" / "data" / "ml-100k"
    if not directory.exists():
        print(f"skipping ML-100K: {directory} not found")
        return []
    from simulations.datasets.recbole import read_recbole_atomic

    ds = read_recbole_atomic(directory)
    split = leave_one_out(ds.interactions)
    encoder = ClipEncoder(allow_random_init=True, seed=args.seed)  # text tower only: token identity
    text = encoder.embed_texts(list(ds.catalog.text))
    variants = {
        "id-only": {"use_id": True},
        "text-only": {"text": text, "use_id": False},
        "fused (text+id)": {"text": text, "use_id": True},
    }
    return two_tower_rows(
        "ml-100k (leave-one-out)", split, ds.catalog.n_items, variants, args.epochs, None, args.seed
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--clip-epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-movielens", action="store_true")
    args = parser.parse_args()
    clip_rows, rows = synthetic(args)
    if not args.skip_movielens:
        rows += movielens(args)
    print_table("CLIP retrieval on held-out synthetic items", clip_rows)
    cols = [
        "dataset",
        "method",
        "recall@100",
        "recall@500",
        "warm_recall@100",
        "cold_recall@100",
        "cold_recall@500",
        "cold_n",
        "train_seconds",
    ]
    print_table("L1 recall of the true next item (FAISS Flat, seen items excluded)", rows, cols)
    out = ROOT / "benchmarks" / "results" / "l1_coldstart.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(clip_rows + rows, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
