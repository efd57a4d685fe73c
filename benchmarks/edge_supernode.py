"""A SuperNode on one core: memory of its whole process tree, local training and per-round overhead.

Protocol: a SuperLink (this, the full install) and one SuperNode from the **client install**
(``--client-venv``: ``pip install .`` without extras and a CPU-only torch) on 127.0.0.1, insecure.
The SuperNode and everything it starts are pinned to one core (``taskset -c 1``); the SuperLink and
the ServerApp to the other. The node's data: one synthetic user with a history of 200 items (from a
world of 300 long-lived users and 2,000 items); SASRec hidden 64, 2 blocks, max_len 50; one local
epoch of SGD per round; 10 rounds.

Two SuperNodes can be measured (``--supernode``): ``tandem`` (default), ``tandem-supernode``, whose
ClientApp runs resident in the SuperNode's own process (``fl/resident_supernode.py``), and
``flower``, ``flower-supernode`` as shipped (``--isolation subprocess``: a ``flower-superexec``
process that starts a fresh ``flwr-clientapp`` process for every message).

* ``peak_uss_mb``: the largest sum of unique memory (USS: private clean + dirty pages, from
  ``/proc/<pid>/smaps_rollup``) over the SuperNode's process tree, sampled every 0.1 s, and how it
  divides at that moment between the SuperNode and its ``flwr-clientapp`` processes;
* ``train_seconds_per_round``: local training as the client measures it (median over rounds);
* ``overhead_seconds_per_round``: the rest of the round trip (median of round trip minus
  training): the SuperNode's polling of the SuperLink (Flower 1.42's SuperNode sleeps 3 s when it
  finds no message), the ServerApp's polling for replies and, with ``flower-supernode``, a Python,
  torch and Flower start per message;
* ``device_overhead_seconds_per_round`` (``tandem`` only): the device's own share, from the
  SuperNode's log: the train task's wall time (acquired -> reply pushed) minus training.

    python benchmarks/edge_supernode.py --client-venv ~/tandem-client
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
BIN = Path(sys.executable).parent


def uss_kb(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    return sum(int(m) for m in re.findall(r"^Private_(?:Clean|Dirty):\s+(\d+) kB", text, re.M))


def process_name(pid: int) -> str:
    """The program a process runs (its first two command-line words), or "" once it is gone."""
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return ""
    return " ".join(Path(w.decode(errors="replace")).name for w in words[:2])


def tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


SUPERNODES = {
    "tandem": ("tandem-supernode", "ClientApp resident in the SuperNode process"),
    "flower": ("flower-supernode", "subprocess isolation"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--client-venv", required=True)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--supernode",
        choices=sorted(SUPERNODES),
        default="tandem",
        help="tandem: tandem-supernode (the ClientApp resident in the SuperNode's process); "
        "flower: flower-supernode (a fresh flwr-clientapp process per message)",
    )
    args = parser.parse_args()
    client_bin = Path(args.client_venv).resolve() / "bin"  # the SuperNode runs in its own cwd
    from processes import Cluster, free_port, wait_for_port

    from fl.server_app import read_rounds
    from ranking.data import Dataset
    from ranking.storage import save_dataset
    from simulations.datasets.synthetic import synthetic_dataset
    from simulations.report import write_results

    work = Path(tempfile.mkdtemp(prefix="edge-supernode-"))
    world = synthetic_dataset(seed=0, n_users=300, sessions_per_user=40.0)  # long histories
    inter = world.interactions
    user = int(next(u for u, s in enumerate(inter.sequences()) if len(s) >= 200))
    rows = (inter.user == user).nonzero()[0][-200:]
    save_dataset(Dataset("one-user", world.catalog, inter.take(rows)), work / "node.npz")
    save_dataset(world, work / "server.npz")
    port = free_port()
    home = work / "home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "edge"\n\n[superlink.edge]\naddress = "127.0.0.1:{port}"\n'
        "insecure = true\n"
    )
    cluster = Cluster(work)
    peak = [0]
    at_peak: list[tuple[str, int]] = []  # (process, USS kB) when the sum peaked
    try:
        superlink = cluster.start(
            "superlink",
            [
                "taskset",
                "-c",
                "0",
                str(BIN / "flower-superlink"),
                "--insecure",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--disable-runtime-dependency-installation",
            ],
            home,
        )
        wait_for_port(port, superlink)
        node = cluster.start(
            "supernode",
            [
                # the client install's bin first: the SuperNode starts flwr-clientapp by name
                "env",
                f"PATH={client_bin}{os.pathsep}{os.environ['PATH']}",
                "taskset",
                "-c",
                "1",
                str(client_bin / SUPERNODES[args.supernode][0]),
                "--insecure",
                "--superlink",
                f"127.0.0.1:{port}",
                "--port",
                str(free_port()),
                "--node-config",
                f"data-path='{work / 'node.npz'}' partition-id=0 max-threads=1 max-history=200",
            ],
            work / "node-home",
        )
        time.sleep(3)
        if node.poll() is not None:
            raise SystemExit(f"the SuperNode exited at start:\n{cluster.context()}")
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                per_process = [(process_name(p), uss_kb(p)) for p in tree(node.pid)]
                total = sum(kb for _, kb in per_process)
                if total > peak[0]:
                    peak[0] = total
                    at_peak[:] = per_process
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        run_config = (
            f"data-path='{work / 'server.npz'}' run-dir='{work / 'run'}' num-rounds={args.rounds} "
            "min-train-nodes=1 fraction-train=1.0 partition='users_per_client' "
            "users-per-client=1000 model.sasrec.hidden=64 model.sasrec.n-blocks=2"
        )
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        submitted = subprocess.run(
            [str(BIN / "flwr"), "run", str(ROOT), "edge", "--stream", "--run-config", run_config],
            cwd=work,
            env={**env, "FLWR_HOME": str(home)},
            capture_output=True,
            text=True,
            timeout=1800,
        )
        stop.set()
        sampler.join()
        rounds = [r for r in read_rounds(work / "run") if r["round"] > 0]
        if len(rounds) != args.rounds:
            raise SystemExit(f"run incomplete:\n{submitted.stdout[-3000:]}\n{cluster.context()}")
    finally:
        cluster.stop()
    train = [r["train_seconds"] for r in rounds]
    overhead = [r["round_trip_seconds"] - r["train_seconds"] for r in rounds]
    # tandem-supernode logs each task's wall time on the device (acquired -> reply pushed)
    tasks = [
        float(s)
        for s in re.findall(
            r"tandem-supernode: train task completed in ([0-9.]+) s",
            cluster.logs["supernode"].read_text(),
        )
    ]
    torch_version = subprocess.run(
        [str(client_bin / "python"), "-c", "import torch; print(torch.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    build = "CPU build" if "+cpu" in torch_version else "CUDA build"
    row = {
        "dataset": "synthetic-2000, one user, history 200",
        "method": f"{SUPERNODES[args.supernode][0]} ({args.client_venv}, torch {torch_version}: "
        f"{build}), {SUPERNODES[args.supernode][1]}",
        "torch_build": build,
        "setting": "1 core (taskset), max-threads=1, SASRec h64 x2, max_len 50, 1 local epoch",
        "peak_uss_mb": peak[0] / 1024,
        # where the peak sits: the SuperNode itself, and the flwr-clientapp processes it started
        "peak_supernode_uss_mb": sum(kb for n, kb in at_peak if "clientapp" not in n) / 1024,
        "peak_clientapp_uss_mb": sum(kb for n, kb in at_peak if "clientapp" in n) / 1024,
        "clientapp_processes_at_peak": sum("clientapp" in n for n, _ in at_peak),
        "processes_at_peak": "; ".join(f"{n}: {kb / 1024:.0f} MB" for n, kb in at_peak),
        "train_seconds_per_round": statistics.median(train),
        "overhead_seconds_per_round": statistics.median(overhead),
        "rounds": len(rounds),
    }
    if len(tasks) == len(train):  # the device's own share of the overhead: the task minus training
        row["device_overhead_seconds_per_round"] = statistics.median(
            t - r for t, r in zip(tasks, train, strict=True)
        )
    print(json.dumps(row, indent=2))
    row["command"] = " ".join(["python", *sys.argv])
    out = ROOT / "benchmarks" / "results" / "edge_supernode.json"
    write_results(out, [row], key=("dataset", "method", "torch_build", "setting"))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
