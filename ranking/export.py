"""Export the session model for on-device inference: TorchScript and ONNX, fp32 or int8.

What a phone runs is :class:`OnDeviceScorer`: a left-padded ``int64 [B, max_len]`` batch of
shifted item ids (``item + 1``, ``0`` = padding, as :func:`ranking.data.pad_left` writes them) in,
the ``top_k`` best items out, ``(scores float32 [B, k], item_ids int64 [B, k])`` with 0-based item
ids. The exported graph has a fixed sequence width ``max_len`` and a dynamic batch axis.

Before export the network is copied to the CPU in eval mode and its item table is frozen
(:class:`FrozenItemTable`: content projections are folded in, so the content matrix does not
travel). ``quantize_int8=True`` additionally

* stores the item table as int8 with one fp32 scale per row (symmetric, weight-only; the table is
  most of the model: ``n_items x D`` against ``~6 D^2`` per SASRec block), dequantised in the graph;
* TorchScript: dynamically quantises the ``Linear`` (and ``GRU``/``LSTM``) layers with
  :func:`torch.ao.quantization.quantize_dynamic` (int8 weights, activations quantised per call);
* ONNX (:func:`quantize_onnx`, one fp32 export serves both): the same int8 table as an int8
  initializer with a per-axis ``DequantizeLinear``, then
  :func:`onnxruntime.quantization.quantize_dynamic` (int8 ``MatMul`` and ``LSTM`` weights).

The exporter folds constant subgraphs on tensors of up to 8,192 elements, so a toy model's table
(``n_items x D <= 8192``) is also stored as a transposed fp32 copy for the output layer; real
catalogs keep a single table shared by the input and the output layer.

Every file is written atomically (a temporary file in the target directory, renamed into place
only once written and verified: the exported model is loaded back and compared with PyTorch).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from encoders.errors import DataError
from encoders.storage import atomic_path
from ranking.device_scorer import (
    METADATA_FILE,
    FrozenItemTable,
    OnDeviceScorer,
    _check_max_len,
    _metadata,
    _quiet,
    _verify,
    example_inputs,
    freeze_for_device,
    quantize_rows_int8,
)
from ranking.export_onnx import export_onnx, onnx_metadata, onnx_session, quantize_onnx
from ranking.models import SequenceModel

__all__ = [
    "FrozenItemTable",
    "OnDeviceScorer",
    "export_checkpoint",
    "export_onnx",
    "export_torchscript",
    "freeze_for_device",
    "load_torchscript",
    "onnx_metadata",
    "onnx_session",
    "quantize_onnx",
    "quantize_rows_int8",
    "torchscript_metadata",
]


def export_torchscript(
    network: SequenceModel,
    path: str | Path,
    *,
    max_len: int,
    top_k: int = 10,
    quantize_int8: bool = False,
) -> Path:
    """Trace :class:`OnDeviceScorer` over ``network`` into a TorchScript file at ``path``.

    The input width is fixed to ``max_len``; the batch size is free. With ``quantize_int8`` the
    item table is stored in int8 and the ``Linear``/``GRU``/``LSTM`` layers are dynamically
    quantised (:func:`torch.ao.quantization.quantize_dynamic`). The file is written atomically,
    after checking that the traced scorer reproduces the PyTorch one. Returns ``path``.
    """
    path = Path(path)
    _check_max_len(network, max_len)
    reference = OnDeviceScorer(freeze_for_device(network), top_k).eval()
    scorer = OnDeviceScorer(freeze_for_device(network, int8_table=quantize_int8), top_k).eval()
    if quantize_int8:
        with _quiet():
            scorer = torch.ao.quantization.quantize_dynamic(
                scorer, {nn.Linear, nn.GRU, nn.LSTM}, dtype=torch.qint8
            )
    example = example_inputs(network.n_items, max_len, batch=2, seed=1)
    meta = _metadata(network, max_len=max_len, top_k=top_k, int8=quantize_int8, fmt="torchscript")
    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(scorer, example, check_trace=False)
    with atomic_path(path) as tmp:
        with _quiet():
            torch.jit.save(traced, str(tmp), _extra_files={METADATA_FILE: json.dumps(meta)})
        loaded = load_torchscript(tmp)
        with torch.no_grad():
            _verify(reference, loaded, max_len, path, exact=not quantize_int8)
    return path


def load_torchscript(path: str | Path) -> torch.jit.ScriptModule:
    """Load an exported TorchScript scorer (CPU, eval mode); a missing or unreadable file raises
    :class:`~encoders.errors.DataError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError("no such TorchScript file", path=path)
    try:
        with _quiet():
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # torch raises RuntimeError, ValueError, ... for corrupt archives
        raise DataError(f"not a readable TorchScript file ({exc})", path=path) from exc
    return module.eval()


def torchscript_metadata(path: str | Path) -> dict:
    """The metadata written by :func:`export_torchscript` (``max_len``, ``top_k``, ...)."""
    path = Path(path)
    extra = {METADATA_FILE: ""}
    try:
        with _quiet():
            torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        return json.loads(extra[METADATA_FILE])
    except Exception as exc:
        raise DataError(f"no readable export metadata ({exc})", path=path) from exc


# ---- ONNX ----------------------------------------------------------------------------------


def export_checkpoint(
    checkpoint: str | Path,
    path: str | Path,
    *,
    fmt: str = "onnx",
    top_k: int = 10,
    quantize_int8: bool = False,
) -> Path:
    """Export a trained session model from its checkpoint directory (``ranking.checkpoint``).

    The model spec in the checkpoint's manifest gives the network and its window (``max_len``):
    ``fmt`` is ``"onnx"`` or ``"torchscript"``. This is the path from a run (central ``save``,
    or the federated server's ``best_model``) to a device.
    """
    from ranking.recommender import load_recommender

    exporters = {"onnx": export_onnx, "torchscript": export_torchscript}
    if fmt not in exporters:
        raise ValueError(f"fmt must be one of {sorted(exporters)}, got {fmt!r}")
    recommender = load_recommender(checkpoint)
    network = recommender.network
    assert network is not None
    return exporters[fmt](
        network, path, max_len=recommender.cfg.max_len, top_k=top_k, quantize_int8=quantize_int8
    )
