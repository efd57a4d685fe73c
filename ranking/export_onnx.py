"""ONNX export of the on-device scorer (fp32, and int8 via :func:`quantize_onnx`); see
:mod:`ranking.export` for what is exported and how it is verified."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from encoders.errors import DataError
from encoders.storage import atomic_path
from ranking.device_scorer import (
    INPUT_NAME,
    ITEM_TABLE,
    ONNX_OPSET,
    OUTPUT_NAMES,
    OnDeviceScorer,
    _check_max_len,
    _check_outputs,
    _metadata,
    _quiet,
    _verify,
    example_inputs,
    freeze_for_device,
    quantize_rows_int8,
)
from ranking.models import SequenceModel

__all__ = ["export_onnx", "onnx_metadata", "onnx_session", "quantize_onnx"]


def export_onnx(
    network: SequenceModel,
    path: str | Path,
    *,
    max_len: int,
    top_k: int = 10,
    quantize_int8: bool = False,
) -> Path:
    """Export :class:`OnDeviceScorer` over ``network`` to an ONNX file at ``path``.

    ``torch.onnx.export`` (the ``torch.export``-based exporter, opset :data:`ONNX_OPSET`) with a
    dynamic batch axis and the input width fixed to ``max_len``; input ``inputs``, outputs
    ``scores`` and ``item_ids``; no external data file. With ``quantize_int8`` the fp32 graph is
    then quantised as by :func:`quantize_onnx`. The result is loaded with ONNX Runtime and checked
    against PyTorch before it is renamed into place. Returns ``path``.
    """
    import onnx

    path = Path(path)
    _check_max_len(network, max_len)
    scorer = OnDeviceScorer(freeze_for_device(network), top_k).eval()
    meta = _metadata(network, max_len=max_len, top_k=top_k, int8=False, fmt="onnx")
    model = _onnx_model(scorer, max_len, meta)
    with atomic_path(path) as tmp:
        if quantize_int8:
            _quantize_onnx_model(model, tmp)
        else:
            onnx.save_model(model, str(tmp))
        _verify(scorer, _onnx_runner(onnx_session(tmp)), max_len, path, exact=not quantize_int8)
    return path


def _onnx_model(scorer: OnDeviceScorer, max_len: int, meta: dict) -> Any:
    example = example_inputs(scorer.network.n_items, max_len, batch=2, seed=1)
    with _quiet():
        program = torch.onnx.export(
            scorer,
            (example,),
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            opset_version=ONNX_OPSET,
            dynamo=True,
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            verbose=False,
        )
    model = program.model_proto
    _strip_debug_metadata(model)
    names = {init.name for init in model.graph.initializer}
    if ITEM_TABLE in names:
        meta = {**meta, "item_table": ITEM_TABLE}
    _set_metadata(model, meta)
    return model


def _strip_debug_metadata(model: Any) -> None:
    """Drop the exporter's per-node debug annotations (stack traces, FX names): ~10% of the file."""
    graph = model.graph
    for item in (*graph.node, *graph.input, *graph.output, *graph.value_info, *graph.initializer):
        del item.metadata_props[:]
    del graph.metadata_props[:]


def _set_metadata(model: Any, meta: dict) -> None:
    kept = [p for p in model.metadata_props if not p.key.startswith("tandem.")]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in meta.items():
        model.metadata_props.add(key=f"tandem.{key}", value=json.dumps(value))


def _get_metadata(model: Any) -> dict:
    return {
        p.key.removeprefix("tandem."): json.loads(p.value)
        for p in model.metadata_props
        if p.key.startswith("tandem.")
    }


def quantize_onnx(src: str | Path, dst: str | Path) -> Path:
    """Write an int8 version of the fp32 ONNX scorer ``src`` (from :func:`export_onnx`) to ``dst``.

    The item table becomes int8 with one scale per row (an int8 initializer and a per-axis
    ``DequantizeLinear``, as :class:`FrozenItemTable` does for TorchScript), then
    :func:`onnxruntime.quantization.quantize_dynamic` quantises the ``MatMul`` (and ``LSTM``)
    weights. Written atomically after a test run with ONNX Runtime. Returns ``dst``.
    """
    import onnx

    src, dst = Path(src), Path(dst)
    onnx_session(src)  # DataError if missing or unreadable
    model = onnx.load_model(str(src))
    meta = _get_metadata(model)
    if meta.get("int8"):
        raise DataError("the model is already quantised", path=src)
    with atomic_path(dst) as tmp:
        _quantize_onnx_model(model, tmp)
        session = onnx_session(tmp)
        x = example_inputs(int(meta.get("n_items", 1)), int(meta.get("max_len", 1)))
        _check_outputs(*_onnx_runner(session)(x), len(x), dst)
    return dst


def _quantize_onnx_model(model: Any, dst: Path) -> None:
    """Quantise ``model`` (a ModelProto, changed in place) into the file ``dst``."""
    import onnx
    from onnx import helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    meta = _get_metadata(model)
    graph = model.graph
    table_name = meta.get("item_table")
    table = next((t for t in graph.initializer if t.name == table_name), None)
    if table is not None:
        q, scale = quantize_rows_int8(torch.from_numpy(numpy_helper.to_array(table).copy()))
        graph.initializer.remove(table)
        graph.initializer.extend(
            [
                numpy_helper.from_array(q.numpy(), f"{table_name}.int8"),
                numpy_helper.from_array(scale.numpy(), f"{table_name}.scale"),
                numpy_helper.from_array(np.zeros(len(q), np.int8), f"{table_name}.zero_point"),
            ]
        )
        dequantize = helper.make_node(
            "DequantizeLinear",
            [f"{table_name}.int8", f"{table_name}.scale", f"{table_name}.zero_point"],
            [table_name],
            name="item_table_dequantize",
            axis=0,
        )
        graph.node.insert(0, dequantize)
    _set_metadata(model, {**meta, "int8": True})
    with _quiet():
        # The item table is no initializer any more, so the Gather that reads it is left alone.
        quantize_dynamic(model, dst, weight_type=QuantType.QInt8)
    quantized = onnx.load_model(str(dst))
    if not _get_metadata(quantized).get("int8"):
        _set_metadata(quantized, {**meta, "int8": True})
        onnx.save_model(quantized, str(dst))


def _onnx_runner(session: Any) -> Callable[[Tensor], list[np.ndarray]]:
    def run(x: Tensor) -> list[np.ndarray]:
        return session.run(list(OUTPUT_NAMES), {INPUT_NAME: x.numpy()})

    return run


def onnx_session(path: str | Path, *, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU :class:`~onnxruntime.InferenceSession` for an exported model.

    ``threads`` sets the intra-op thread count (``None``: ONNX Runtime's default). A missing or
    unreadable file raises :class:`~encoders.errors.DataError` naming it.
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise DataError("no such ONNX file", path=path)
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own (Fail, InvalidProtobuf, ...) errors
        raise DataError(f"not a loadable ONNX model ({exc})", path=path) from exc


def onnx_metadata(path: str | Path) -> dict:
    """The metadata written by :func:`export_onnx` (``max_len``, ``top_k``, ``int8``, ...)."""
    meta = onnx_session(path).get_modelmeta().custom_metadata_map
    return {
        k.removeprefix("tandem."): json.loads(v) for k, v in meta.items() if k.startswith("tandem.")
    }
