"""Simulation throughput: client updates per second, in Flower's Simulation Runtime as shipped and
with tandem's two changes to it.

Each run is the benchmark recipe of ``fl_vs_central.py`` (one user per client, FedAdam, one local
SGD epoch) for ``--rounds`` rounds through Flower's Simulation Runtime with Ray, evaluated only after
the last round. ``updates_per_s`` is the accepted client updates divided by the summed wall time of
the rounds (round 0's evaluation and the Ray start excluded); ``round_s`` is the mean round time.
``--runtime flower`` is Flower 1.42's runtime as shipped: its dispatcher scans the link state once
per virtual node, and its Ray backend pickles the ClientApp for every message. ``--runtime tandem``
(the default of every tandem simulation) hands messages out in one pass
(:mod:`simulations.vce_dispatch`) and pickles the ClientApp once per run
(:mod:`simulations.vce_app_cache`). Both run the same ServerApp and ClientApp.

    .venv/bin/python benchmarks/fl_throughput.py --datasets synthetic --rounds 20

Writes ``benchmarks/results/fl_throughput.json`` (rows of other runs already there are kept).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from fl_vs_central import dataset_file  # noqa: E402

from fl.server_app import read_rounds  # noqa: E402
from fl.settings import FederatedSettings  # noqa: E402
from fl.task import task_data  # noqa: E402
from simulations.flower_sim import SimulationBackend, simulate  # noqa: E402
from simulations.report import print_table, write_results  # noqa: E402

MACHINE = f"{platform.machine()}, {os.cpu_count()} cores"
ENCODINGS = {"dense": ("dense", "none"), "row-sparse int8": ("row-sparse", "int8")}


def throughput_row(
    name: str, encoding: str, runtime: str, settings: FederatedSettings
) -> dict[str, object]:
    n_clients = task_data(settings).partition.n_clients
    t0 = time.perf_counter()
    simulate(
        settings,
        num_supernodes=n_clients,
        backend=SimulationBackend(
            linear_dispatch=runtime == "tandem", send_app_once=runtime == "tandem"
        ),
    )
    wall = time.perf_counter() - t0
    trained = [r for r in read_rounds(Path(settings.run_dir)) if r["round"] > 0]
    seconds = sum(r["seconds"] for r in trained)
    return {
        "dataset": name,
        "method": f"{runtime} runtime",
        "setting": f"{encoding}, {len(trained)} rounds, {settings.fraction_train:.0%} of "
        f"{n_clients} clients",
        "updates_per_s": sum(r["accepted"] for r in trained) / seconds,
        "round_s": seconds / len(trained),
        "seconds": wall,
        "machine": MACHINE,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["synthetic"])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--encodings", nargs="+", default=list(ENCODINGS), choices=list(ENCODINGS))
    parser.add_argument(
        "--runtime", nargs="+", default=["flower", "tandem"], choices=["flower", "tandem"]
    )
    parser.add_argument(
        "--no-write",
        action="store_true",
        help="print only (fl_round_profile.py samples such a run)",
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="fl-throughput-"))
    rows = []
    for name in args.datasets:
        for encoding in args.encodings:
            update_encoding, quantize = ENCODINGS[encoding]
            for runtime in args.runtime:
                settings = FederatedSettings.create(
                    data_path=str(dataset_file(name, workdir)),
                    run_dir=str(workdir / f"{name}-{update_encoding}-{runtime}"),
                    num_rounds=args.rounds,
                    fraction_train=args.fraction,
                    partition="one_user_per_client",
                    eval_every=args.rounds,
                    update_encoding=update_encoding,
                    quantize=quantize,
                    strategy={"name": "fedadam", "eta": 0.002},
                )
                rows.append(throughput_row(name, encoding, runtime, settings))
                print(rows[-1], flush=True)
    print_table(
        "Simulation throughput (client updates per second)",
        rows,
        ["dataset", "method", "setting", "updates_per_s", "round_s"],
    )
    if args.no_write:
        return
    out = ROOT / "benchmarks" / "results" / "fl_throughput.json"
    write_results(out, rows)
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
