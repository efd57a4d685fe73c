"""Export a federated run's model for devices: ONNX fp32 and int8 with a manifest (version,
checksums, item-id map), read on the device by :class:`fl.device_model.DeviceRecommender`.

    python -m fl.device_export --checkpoint runs/.../fl/best_model --dataset .cache/tandem/<data>.npz --out device_model
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from encoders.storage import atomic_directory
from fl.device_model import DEVICE_FORMAT, DEVICE_FORMAT_VERSION
from ranking.errors import ConfigError, DataError
from ranking.export_onnx import export_onnx, quantize_onnx
from ranking.manifest import write_manifest
from ranking.recommender import load_recommender


def export_device_model(
    checkpoint: str | Path,
    item_ids: Sequence[str],
    out: str | Path,
    *,
    top_k: int = 10,
    version: str | None = None,
) -> Path:
    """Write the device model directory ``out`` (atomically) from a checkpoint directory."""
    model = load_recommender(checkpoint)
    network = model.network
    assert network is not None
    if len(item_ids) != network.n_items:
        raise ConfigError(f"{len(item_ids)} item ids for a model of {network.n_items} items")
    max_len = int(model.cfg.max_len)
    meta: dict[str, Any] = {"source": str(checkpoint)}
    manifest_meta = json.loads((Path(checkpoint) / "manifest.json").read_text()).get("meta", {})
    if "round" in manifest_meta:
        meta["round"] = manifest_meta["round"]
    with atomic_directory(out) as tmp:
        export_onnx(network, tmp / "model.onnx", max_len=max_len, top_k=top_k)
        quantize_onnx(tmp / "model.onnx", tmp / "model.int8.onnx")
        (tmp / "item_ids.json").write_text(json.dumps([str(i) for i in item_ids]))
        spec = {
            "max_len": max_len,
            "top_k": top_k,
            "models": {"fp32": "model.onnx", "int8": "model.int8.onnx"},
            "model": model.spec.to_dict(),
        }
        manifest = write_manifest(
            tmp,
            format=DEVICE_FORMAT,
            format_version=DEVICE_FORMAT_VERSION,
            spec=spec,
            n_items=network.n_items,
            meta=meta,
        )
        meta["version"] = version or manifest.files["model.onnx"][:12]
        write_manifest(
            tmp,
            format=DEVICE_FORMAT,
            format_version=DEVICE_FORMAT_VERSION,
            spec=spec,
            n_items=network.n_items,
            meta=meta,
        )
    return Path(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fl.device_export", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--checkpoint", required=True, help="a checkpoint directory (best_model/)")
    parser.add_argument("--dataset", required=True, help="the run's dataset file (its item ids)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--version", default=None)
    args = parser.parse_args(argv)
    from ranking.storage import load_dataset

    try:
        ids = load_dataset(args.dataset).catalog.ids
        path = export_device_model(
            args.checkpoint, ids, args.out, top_k=args.top_k, version=args.version
        )
    except (ConfigError, DataError) as exc:
        print(f"device export: {exc}", file=sys.stderr)
        return 2
    print(f"device model: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
