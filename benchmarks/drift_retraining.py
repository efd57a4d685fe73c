"""Online HR@10 of the live service under drift: with and without retraining, and a no-drift control.

Protocol: ``tandem-simulate mode=stream`` (simulations/streaming.py) on the synthetic world
(2,000 items, 1,000 users, 30,283 events): the first half of the events (in time) trains the first
live model (two-tower L1 over the cached tiny-CLIP vectors, SASRec L2, 30 central epochs); the
second half is replayed through the service, test then train (prequential HR@10, k = 10). A drift
alarm (windowed HR@10 below 0.85 x its level after go-live, or the category mix's JS divergence
above 0.1; window 1,000 events) schedules a retraining 1,000 events later: 5 more central epochs of
the L1 towers and 10 Flower rounds of the L2 (FedAvg, one user per client, 10% per round) on the
last 3,000 events, warm-started from the live models, then a bundle swap. Three runs, seed 0:

* ``drift, retraining``: the world's tastes drift at 60% of its horizon (``drift_strength=0.6``);
* ``drift, no retraining``: the same stream, alarms only noted;
* ``no drift (control)``: ``dataset.drift_strength=0``, retraining on (alarms here are false).

Writes ``benchmarks/results/drift_retraining.json`` (one row per run: HR@10 overall, before and after
the drift point) and ``benchmarks/results/drift_online_hr.png``.

Run::

    python benchmarks/drift_retraining.py            # about 15 minutes on 2 cores
    python benchmarks/drift_retraining.py --smoke    # 1,500 live events, 2 rounds (a check)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RETRAIN = ["fl/strategy=fedavg"]  # FedAdam's first steps move a warm model by eta per weight
RUNS = {
    "drift, retraining": RETRAIN,
    "drift, no retraining": ["stream.retrain=false"],
    "no drift (control)": ["dataset.drift_strength=0", *RETRAIN],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    from hydra import compose, initialize_config_dir

    import simulations  # noqa: F401  (registers tandem's Hydra schemas)
    from simulations.run import run
    from simulations.streaming import plot_series

    smoke = ["stream.max_events=1500", "stream.window=300", "stream.retrain_rounds=2"]
    smoke += ["stream.initial_epochs=3"]
    out = Path(args.out)
    work = ROOT / ".cache" / "tandem" / "bench" / ("drift-smoke" if args.smoke else "drift")
    rows, curves, drift_event = [], {}, None
    for name, overrides in RUNS.items():
        with initialize_config_dir(str(ROOT / "conf"), version_base=None):
            cfg = compose(
                "config",
                [
                    "mode=stream",
                    "tracking.enabled=false",
                    *overrides,
                    *(smoke if args.smoke else []),
                ],
            )
        run_dir = work / name.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
        t0 = time.perf_counter()
        row = run(cfg, output_dir=run_dir)[0]
        seconds = time.perf_counter() - t0
        outcomes = np.load(run_dir / "stream_outcomes.npz")
        metrics = json.loads((run_dir / "metrics.json").read_text())
        horizon = float(cfg.dataset.horizon_days) * 86400.0
        drift_at = float(cfg.dataset.drift_times[0]) * horizon
        after = outcomes["time"] >= drift_at
        if outcomes["time"].max() > horizon * 1.01:  # timestamps in another unit: say so
            raise SystemExit("unexpected timestamp unit in the synthetic world")
        rows.append(
            {
                "dataset": "synthetic",
                "method": name,
                "setting": " ".join(overrides) or "defaults",
                "events": int(row["events"]),
                "hr@10": row["hr@10"],
                "ndcg@10": row["ndcg@10"],
                "hr@10_before_drift": float(outcomes["hit"][~after].mean())
                if (~after).any()
                else float("nan"),
                "hr@10_after_drift": float(outcomes["hit"][after].mean())
                if after.any()
                else float("nan"),
                "drift_alarms": int(row["drift_alarms"]),
                "swaps": int(row["swaps"]),
                "retrain_seconds": float(sum(r["seconds"] for r in metrics["retrains"])),
                "seconds": seconds,
            }
        )
        curves[name] = (outcomes["hit"], metrics["retrains"])
        drift_event = int(np.searchsorted(outcomes["time"], drift_at))
        print(json.dumps(rows[-1]), flush=True)
    suffix = "_smoke" if args.smoke else ""
    window = 300 if args.smoke else 1000
    plot_series(out / f"drift_online_hr{suffix}.png", curves, window, drift_event)
    (out / f"drift_retraining{suffix}.json").write_text(json.dumps(rows, indent=2))
    cols = ["method", "hr@10", "hr@10_before_drift", "hr@10_after_drift", "drift_alarms", "swaps"]
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]) for c in cols))


if __name__ == "__main__":
    main()
