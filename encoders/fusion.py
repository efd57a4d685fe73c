"""Fusion of an item's modalities (text, image, optional learned ID) into one L1 vector.

Two ways to combine them:

* ``"concat"``: concatenate the present modalities (missing ones are zeros, plus a presence flag per
  modality) and project with a small MLP;
* ``"gated"``: project each modality into the output space and take a weighted sum, with weights
  from a learned gate that only spreads over the modalities an item has.

**Modality dropout** (training only) hides the text or the image of a random subset of items, so
an item with no image (or no text) still gets a good vector. The ID embedding carries what content
cannot (it is learned from interactions, so it is uninformative for cold-start items: see
``id_dropout``, and :meth:`ItemFusion.mark_id_absent` for items with no interactions).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from encoders.errors import ConfigError

MODES = ("concat", "gated")


class ItemFusion(nn.Module):
    """Item tower over precomputed content vectors.

    Parameters
    ----------
    text, image:
        Frozen ``[n_items, D]`` content vectors (``None`` to leave a modality out).
    text_present, image_present:
        ``[n_items]`` bool: which items have that modality (default: all of them).
    out_dim:
        Dimension of the shared L1 space.
    n_id_items:
        Number of items for a learned ID embedding (``0``: no ID embedding).
    mode:
        ``"concat"`` or ``"gated"``.
    modality_dropout:
        Probability, per item and training step, of hiding one of its content modalities.
    id_dropout:
        Probability of hiding the ID embedding during training, so the content path learns to
        stand alone (as it must for cold-start items).
    """

    def __init__(
        self,
        *,
        text: Tensor | None,
        image: Tensor | None,
        out_dim: int = 64,
        text_present: Tensor | None = None,
        image_present: Tensor | None = None,
        n_id_items: int = 0,
        mode: str = "gated",
        modality_dropout: float = 0.2,
        id_dropout: float = 0.2,
        hidden: int = 128,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ConfigError(f"fusion mode {mode!r} is not known; expected one of {MODES}")
        if text is None and image is None and n_id_items <= 0:
            raise ConfigError("fusion needs at least one of text, image or an ID embedding")
        sizes = [len(x) for x in (text, image) if x is not None]
        if n_id_items:
            sizes.append(n_id_items)
        if len(set(sizes)) != 1:
            raise ConfigError(f"fusion inputs disagree on the number of items: {sizes}")
        self.n_items = sizes[0]
        self.mode = mode
        self.modality_dropout = modality_dropout
        self.id_dropout = id_dropout
        self.out_dim = out_dim
        self.modalities: list[str] = []
        for name, vectors, present in (
            ("text", text, text_present),
            ("image", image, image_present),
        ):
            if vectors is None:
                continue
            self.modalities.append(name)
            self.register_buffer(f"{name}_vectors", F.normalize(vectors.float(), dim=-1))
            mask = torch.ones(self.n_items, dtype=torch.bool) if present is None else present.bool()
            self.register_buffer(f"{name}_present", mask)
        self.id_embedding = nn.Embedding(n_id_items, out_dim) if n_id_items else None
        if self.id_embedding is not None:
            nn.init.normal_(self.id_embedding.weight, std=0.02)
            # Items whose ID vector carries no evidence (cold start) are marked absent here.
            self.register_buffer("id_present", torch.ones(self.n_items, dtype=torch.bool))
        dims = {name: getattr(self, f"{name}_vectors").shape[1] for name in self.modalities}
        if not self.modalities:  # ID-only: nothing to fuse
            return
        if mode == "concat":
            in_dim = (
                sum(dims.values())
                + len(self.modalities)
                + (out_dim + 1 if self.id_embedding is not None else 0)
            )
            self.project = nn.Sequential(
                nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim)
            )
        else:
            self.projections = nn.ModuleDict({n: nn.Linear(d, out_dim) for n, d in dims.items()})
            n_parts = len(self.modalities) + (1 if self.id_embedding is not None else 0)
            self.gate = nn.Linear(sum(dims.values()) + len(self.modalities), n_parts)

    def has_vector(self) -> Tensor:
        """``bool [n_items]``: the items whose vector is not all-zero. A content modality stands in
        for every item; with IDs only, an item marked absent has nothing and gets zeros."""
        if self.modalities or self.id_embedding is None:
            return torch.ones(self.n_items, dtype=torch.bool)
        return self.id_present.clone()

    def mark_id_absent(self, items: Tensor) -> None:
        """Treat the ID vectors of ``items`` as missing (e.g. cold-start items nobody touched)."""
        if self.id_embedding is not None:
            self.id_present[items] = False

    def _device(self) -> torch.device:
        return (
            next(iter(self.parameters())).device
            if any(True for _ in self.parameters())
            else torch.device("cpu")
        )

    def _present(self, items: Tensor) -> dict[str, Tensor]:
        """Which modalities each item shows in this pass (after modality dropout when training)."""
        present = {n: getattr(self, f"{n}_present")[items] for n in self.modalities}
        if self.id_embedding is not None:
            present["id"] = self.id_present[items]
            if self.training and self.id_dropout > 0 and self.modalities:
                present["id"] = present["id"] & (
                    torch.rand(len(items), device=items.device) >= self.id_dropout
                )
        if self.training and self.modality_dropout > 0 and len(self.modalities) > 1:
            drop = torch.rand(len(items), device=items.device) < self.modality_dropout
            which = torch.randint(len(self.modalities), (len(items),), device=items.device)
            for k, name in enumerate(self.modalities):
                others = torch.stack([present[o] for o in self.modalities if o != name]).any(0)
                present[name] = present[name] & ~(
                    drop & (which == k) & others
                )  # never hide the last one
        return present

    def forward(self, items: Tensor | None = None) -> Tensor:
        """L2-normalised vectors ``[len(items), out_dim]`` (all items when ``items`` is ``None``)."""
        if items is None:
            items = torch.arange(self.n_items, device=self._device())
        present = self._present(items)
        if not self.modalities:
            assert self.id_embedding is not None
            return F.normalize(self.id_embedding(items) * present["id"].unsqueeze(-1), dim=-1)
        feats = {
            n: getattr(self, f"{n}_vectors")[items] * present[n].unsqueeze(-1)
            for n in self.modalities
        }
        flags = [present[n].float().unsqueeze(-1) for n in self.modalities]
        id_vec = None
        if self.id_embedding is not None:
            id_vec = self.id_embedding(items) * present["id"].unsqueeze(-1)
        if self.mode == "concat":
            id_parts = [id_vec, present["id"].float().unsqueeze(-1)] if id_vec is not None else []
            parts = [feats[n] for n in self.modalities] + flags + id_parts
            out = self.project(torch.cat(parts, dim=-1))
        else:
            projected = [self.projections[n](feats[n]) for n in self.modalities]
            available = [present[n] for n in self.modalities]
            if id_vec is not None:
                projected.append(id_vec)
                available.append(present["id"])
            gate_in = torch.cat([feats[n] for n in self.modalities] + flags, dim=-1)
            logits = self.gate(gate_in).masked_fill(~torch.stack(available, dim=-1), float("-inf"))
            weights = torch.softmax(logits, dim=-1)
            out = (torch.stack(projected, dim=1) * weights.unsqueeze(-1)).sum(dim=1)
        return F.normalize(out, dim=-1)
