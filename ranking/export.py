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

import contextlib
import copy
import io
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from encoders.errors import DataError
from encoders.storage import atomic_path
from ranking.data import PAD
from ranking.models import SequenceModel

__all__ = [
    "FrozenItemTable",
    "OnDeviceScorer",
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

ONNX_OPSET = 18
INPUT_NAME = "inputs"
OUTPUT_NAMES = ("scores", "item_ids")
ITEM_TABLE = "network.item_emb.weight"
"""The ONNX initializer holding the frozen item table (:class:`FrozenItemTable`'s buffer)."""
METADATA_FILE = "tandem.json"
"""Name of the metadata entry (TorchScript extra file; ONNX ``metadata_props`` keys)."""


def quantize_rows_int8(table: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric per-row int8: ``(q int8 [N, D], scale float32 [N])`` with ``table ~ q * scale``."""
    table = table.detach().float()
    scale = table.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    q = torch.round(table / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


class FrozenItemTable(nn.Module):
    """An :class:`~ranking.models.base.ItemEmbedding` frozen for inference, fp32 or int8.

    Holds the full table ``[n_items + 1, D]`` (content projections folded in). With ``int8`` the
    table is stored as ``int8`` with one fp32 scale per row (symmetric, ``max |row| / 127``); input
    rows are gathered in int8 and scaled, the output table is dequantised once per call.
    """

    def __init__(self, table: Tensor, *, int8: bool = False) -> None:
        super().__init__()
        table = table.detach().float().cpu()
        self.n_items = table.shape[0] - 1
        self.dim = table.shape[1]
        self.int8 = int8
        if int8:
            q, scale = quantize_rows_int8(table)
            self.register_buffer("weight_int8", q)
            self.register_buffer("scale", scale)
        else:
            self.register_buffer("weight", table.clone())

    def table(self) -> Tensor:
        if self.int8:
            return self.weight_int8.float() * self.scale[:, None]
        return self.weight

    def forward(self, inputs: Tensor, table: Tensor | None = None) -> Tensor:
        if table is not None:
            return nn.functional.embedding(inputs, table, padding_idx=PAD)
        if self.int8:
            return self.weight_int8[inputs].float() * self.scale[inputs].unsqueeze(-1)
        return nn.functional.embedding(inputs, self.weight, padding_idx=PAD)


class OnDeviceScorer(nn.Module):
    """``inputs [B, L] int64`` -> ``(scores [B, k] float32, item_ids [B, k] int64)``.

    The ``top_k`` items with the highest ``network.logits(network.last_hidden(inputs))``, best
    first, as 0-based item ids (the padding row is not scored).
    """

    def __init__(self, network: SequenceModel, top_k: int = 10) -> None:
        super().__init__()
        if not 1 <= top_k <= network.n_items:
            raise ValueError(f"top_k must be in [1, n_items={network.n_items}], got {top_k}")
        self.network = network
        self.top_k = top_k

    def forward(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        scores = self.network.logits(self.network.last_hidden(inputs))
        values, ids = torch.topk(scores, self.top_k, dim=-1)
        return values, ids


def freeze_for_device(network: SequenceModel, *, int8_table: bool = False) -> SequenceModel:
    """A CPU, eval-mode copy of ``network`` whose item table is a :class:`FrozenItemTable`."""
    net = copy.deepcopy(network).cpu().eval()
    with torch.no_grad():
        table = net.item_table()
    net.item_emb = FrozenItemTable(table, int8=int8_table)  # type: ignore[assignment]
    for p in net.parameters():
        p.requires_grad_(False)
    return net


# ---- helpers -------------------------------------------------------------------------------


def _check_max_len(network: SequenceModel, max_len: int) -> None:
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    limit = getattr(network, "max_len", None)
    if limit is not None and max_len > limit:
        raise ValueError(f"max_len={max_len} exceeds the model's max_len={limit}")


def example_inputs(n_items: int, max_len: int, batch: int = 3, seed: int = 0) -> Tensor:
    """A left-padded batch with 1..max_len real items per row (for tracing and verification)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((batch, max_len), dtype=np.int64)
    for b in range(batch):
        n = int(rng.integers(1, max_len + 1)) if b else max_len
        out[b, max_len - n :] = rng.integers(1, n_items + 1, size=n)
    return torch.from_numpy(out)


def _metadata(network: SequenceModel, *, max_len: int, top_k: int, int8: bool, fmt: str) -> dict:
    return {
        "format": fmt,
        "model": type(network).__name__,
        "n_items": int(network.n_items),
        "max_len": int(max_len),
        "top_k": int(top_k),
        "int8": bool(int8),
        "input": f"{INPUT_NAME}: int64 [batch, {max_len}] left-padded item+1 ids, 0 = padding",
        "outputs": "scores: float32 [batch, top_k]; item_ids: int64 [batch, top_k], 0-based",
    }


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' deprecation/tracer warnings, log lines and progress prints."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def _check_outputs(scores: Any, ids: Any, batch: int, path: Path) -> tuple[Tensor, Tensor]:
    scores, ids = torch.as_tensor(np.asarray(scores)), torch.as_tensor(np.asarray(ids))
    if scores.ndim != 2 or tuple(scores.shape) != tuple(ids.shape) or len(scores) != batch:
        raise RuntimeError(f"exported model at {path} returned shapes {scores.shape}, {ids.shape}")
    if ids.dtype != torch.int64 or scores.dtype != torch.float32:
        raise RuntimeError(f"exported model at {path} returned {scores.dtype}, {ids.dtype}")
    if not bool(torch.isfinite(scores).all()) or bool((ids < 0).any()):
        raise RuntimeError(f"exported model at {path} returned invalid scores or item ids")
    return scores, ids


def _verify(
    reference: OnDeviceScorer,
    run: Callable[[Tensor], Any],
    max_len: int,
    path: Path,
    *,
    exact: bool,
) -> None:
    """Run an exported scorer ``run(inputs) -> (scores, ids)`` and compare it with ``reference``.

    Exact (fp32) exports must give the PyTorch top-k scores, and those must be the PyTorch scores
    of the returned ids (robust to ties); int8 exports must give well-formed results.
    """
    inputs = example_inputs(reference.network.n_items, max_len)
    scores, ids = _check_outputs(*run(inputs), len(inputs), path)
    with torch.no_grad():
        logits = reference.network.logits(reference.network.last_hidden(inputs))
        want, _ = torch.topk(logits, reference.top_k, dim=-1)
    if tuple(ids.shape) != tuple(want.shape) or bool((ids >= logits.shape[1]).any()):
        raise RuntimeError(f"exported model at {path} returned invalid item ids")
    if not exact:
        return
    tol = 1e-4 * max(1.0, float(want.abs().max()))
    if not torch.allclose(scores, want, atol=tol, rtol=0):
        raise RuntimeError(f"exported model at {path} disagrees with PyTorch on the top-k scores")
    if not torch.allclose(logits.gather(1, ids), want, atol=tol, rtol=0):
        raise RuntimeError(f"exported model at {path} disagrees with PyTorch on the top-k items")


# ---- TorchScript ---------------------------------------------------------------------------


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


def export_checkpoint(
    checkpoint: str | Path, path: str | Path, *, fmt: str = "onnx", top_k: int = 10, quantize_int8: bool = False
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
