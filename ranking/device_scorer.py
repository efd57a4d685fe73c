"""What a device runs: :class:`OnDeviceScorer` over a frozen copy of the network, and what both
exporters share (int8 item tables, metadata, verification against PyTorch). See :mod:`ranking.export`.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ranking.data import PAD
from ranking.models import SequenceModel

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
