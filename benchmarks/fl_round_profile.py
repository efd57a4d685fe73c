"""Where a simulated round's time goes: py-spy samples of the server process and each Ray actor.

Starts ``fl_throughput.py`` (one dataset, one encoding, one runtime) in a subprocess, waits
``--warmup`` seconds (Ray start, round 0's evaluation, the first rounds), then samples the server
process (the one running the ServerApp and Flower's dispatcher) and every ``ClientAppActor`` with
``py-spy record`` for ``--seconds`` seconds at ``--rate`` Hz, active samples only. Each sample is
put in the first category whose frame it contains (the order below), and each category's share is
its samples divided by the samples a fully busy thread would give in that time (``busy_share``: 0.5
means half of the wall time):

* actor: ``local training`` (forward, backward, optimizer), ``load global state``
  (decoding the arrays, ``set_state``), ``encode update`` (rows to send, int8, arrays),
  ``client set-up`` (the rest of the ClientApp: settings, data, seeding), ``ray`` (receiving the
  message and sending the reply outside the ClientApp);
* server: ``submit to ray`` (pickling a message and handing it to an actor), ``fetch from ray``
  (waiting for and unpickling a reply), ``decode replies``, ``aggregate``, ``evaluate``,
  ``dispatch`` (handing messages to the worker threads), ``other``.

    .venv/bin/python benchmarks/fl_round_profile.py --dataset synthetic --encoding "row-sparse int8"

Needs ``py-spy`` (in the ``dev`` extra). Writes ``benchmarks/results/fl_round_profile.json``
(rows of other settings already there are kept).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulations.report import print_table, write_results  # noqa: E402

MACHINE = f"{platform.machine()}, {os.cpu_count()} cores"
ACTOR_CATEGORIES = (
    ("local training", ("train_locally",)),
    ("load global state", ("from_array_record", "set_state")),
    ("encode update", ("encode_update", "rows_to_send", "to_array_record")),
    ("client set-up", ("ClientApp.__call__",)),
    ("ray", ("",)),
)
SERVER_CATEGORIES = (
    ("submit to ray", ("ActorMethod.remote", "BasicActorPool.submit")),
    ("fetch from ray", ("fetch_result_and_return_actor_to_pool",)),
    ("decode replies", ("_decode_replies",)),
    ("aggregate", ("aggregate_round",)),
    ("evaluate", ("evaluate_round", "evaluate_state")),
    ("dispatch", ("add_messages_to_queue", "put_message_into_state", "next_message_per_node")),
    ("other", ("",)),
)


def categorise(profile: Path, categories: tuple[tuple[str, tuple[str, ...]], ...]) -> Counter:
    """Samples per category from py-spy's raw output (``frame;frame;... count`` per line)."""
    counts: Counter = Counter()
    for line in profile.read_text().splitlines():
        if not line.strip():
            continue
        stack, n = line.rsplit(" ", 1)
        names = [frame.split(" (")[0] for frame in stack.split(";")]
        for category, markers in categories:
            if any(marker in name for marker in markers for name in names):
                counts[category] += int(n)
                break
    return counts


def processes(root: int) -> dict[int, str]:
    """The server (``root``) and the ClientAppActor processes now running, by pid."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    found = {root: "server"}
    for line in out.splitlines():
        pid, _, args = line.strip().partition(" ")
        if "ClientAppActor" in args:
            found[int(pid)] = f"actor {len(found)}"
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument(
        "--encoding", default="row-sparse int8", choices=["dense", "row-sparse int8"]
    )
    parser.add_argument("--runtime", default="tandem", choices=["flower", "tandem"])
    parser.add_argument("--warmup", type=int, default=25)
    parser.add_argument("--seconds", type=int, default=25)
    parser.add_argument("--rate", type=int, default=50)
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        sys.exit("py-spy is not installed: pip install py-spy (it is in the dev extra)")
    work = Path(tempfile.mkdtemp(prefix="fl-profile-"))
    rounds = int((args.warmup + args.seconds) / 1.2) + 20  # more rounds than the sampling needs
    sim = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "fl_throughput.py"), "--datasets", args.dataset,
         "--encodings", args.encoding, "--runtime", args.runtime, "--rounds", str(rounds),
         "--no-write"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(args.warmup)
        if sim.poll() is not None:
            sys.exit(f"the simulation ended before sampling (exit {sim.returncode})")
        roles = processes(sim.pid)
        samplers = []
        for pid in roles:
            command = [py_spy, "record", "--nonblocking", "-r", str(args.rate)]
            command += ["-d", str(args.seconds), "-f", "raw", "-o", str(work / f"{pid}.txt")]
            with open(work / f"{pid}.log", "w") as log:
                command += ["--pid", str(pid)]
                samplers.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
        for sampler in samplers:
            sampler.wait()
    finally:
        sim.kill()
        sim.wait()
        subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "stop", "--force"],
                       capture_output=True)  # fmt: skip
    possible = args.rate * args.seconds
    rows = []
    for pid, role in roles.items():
        profile = work / f"{pid}.txt"
        if not profile.exists():
            continue
        categories = SERVER_CATEGORIES if role == "server" else ACTOR_CATEGORIES
        counts = categorise(profile, categories)
        for category, _ in categories:
            rows.append(
                {
                    "dataset": args.dataset,
                    "method": f"{args.runtime} runtime",
                    "setting": f"{args.encoding}, {role}",
                    "category": category,
                    "busy_share": counts[category] / possible,
                    "machine": MACHINE,
                }
            )
    print_table(
        "Where a simulated round's time goes (share of wall time, py-spy)",
        rows,
        ["setting", "category", "busy_share"],
    )
    out = ROOT / "benchmarks" / "results" / "fl_round_profile.json"
    write_results(out, rows)
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
