"""An OpenCLIP wrapper that embeds item text and images into one L2-normalised space.

Where the weights come from
---------------------------
* ``ClipEncoder("ViT-B-32", pretrained="laion2b_s34b_b79k")``: an open_clip model name with a
  pretrained tag, **only if the weights are already in the local cache** (nothing is downloaded).
* ``ClipEncoder("ViT-B-32", pretrained="/path/to/weights.bin")``: a local checkpoint file.
* ``ClipEncoder("local-dir:/path/to/folder")``: a folder with ``open_clip_config.json`` and a weights
  file, as written by :meth:`ClipEncoder.save_local_dir`.
* ``ClipEncoder("tandem-tiny-clip", allow_random_init=True)``: our tiny model config (shipped as
  JSON in ``encoders/model_configs`` and registered with ``open_clip.add_model_config``), randomly
  initialised so it can be trained on a catalog (see :mod:`encoders.contrastive`).

A missing checkpoint is an :class:`~encoders.errors.EncoderError` that names the file or tag and how
to supply it. Random weights are never used unless ``allow_random_init=True`` is asked for.

Embeddings can be cached on disk under a key made from the weights' hash and the content's hash, so
a second run over the same catalog does no encoder work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from encoders.errors import EncoderError

log = logging.getLogger(__name__)

TINY_MODEL = "tandem-tiny-clip"
MODEL_CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
LOCAL_DIR = "local-dir:"
_registered = False


def register_model_configs() -> None:
    """Register tandem's own model configs (``encoders/model_configs/*.json``) with open_clip."""
    global _registered
    if not _registered:
        import open_clip

        open_clip.add_model_config(MODEL_CONFIG_DIR)
        _registered = True


def _cached_tag_file(model: str, tag: str, cache_dir: str | None) -> Path:
    """The local file holding ``model``/``tag`` weights, or an EncoderError saying how to get it."""
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg

    cfg = get_pretrained_cfg(model, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(model)
        raise EncoderError(
            f"pretrained={tag!r} is neither a known tag of {model!r} nor an existing file; "
            f"known tags: {tags or 'none'}"
        )
    looked: list[str] = []
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo, filename = (
            os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
        )
        names = (
            [filename]
            if filename
            else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        )
        for name in names:
            found = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
            looked.append(f"hf-hub {repo}/{name}")
            if isinstance(found, str) and os.path.isfile(found):
                return Path(found)
    url = cfg.get("url", "")
    if url:
        path = Path(cache_dir or Path.home() / ".cache" / "clip") / os.path.basename(url)
        looked.append(str(path))
        if path.is_file():
            return path
    raise EncoderError(
        f"weights for {model!r} with pretrained={tag!r} are not in the local cache (looked for "
        f"{', '.join(looked)}), and tandem never downloads at run time. Download them on a connected "
        f"machine (python -c \"import open_clip; open_clip.create_model('{model}', pretrained='{tag}')\") "
        f"and copy the cache here, or pass a checkpoint file (encoder.pretrained=/path/to/weights.bin) "
        f"or a folder (encoder.model=local-dir:/path/to/folder)."
    )


def _find_dir_checkpoint(folder: Path) -> Path | None:
    files = sorted(p for p in folder.iterdir() if p.suffix in CHECKPOINT_SUFFIXES and p.is_file())
    return files[0] if files else None


class ClipEncoder:
    """Batched, cached text and image embedding with an OpenCLIP model.

    Parameters
    ----------
    model:
        An open_clip model name (ours: ``tandem-tiny-clip``) or ``local-dir:<folder>``.
    pretrained:
        A pretrained tag (weights must be cached locally) or a checkpoint file path.
    allow_random_init:
        Use random weights when no ``pretrained`` is given (for training from scratch).
    pretrained_text:
        Passed to open_clip: whether configs with a Hugging Face text tower fetch its base
        weights. Off by default, because nothing can be fetched at run time.
    batch_size, num_threads, progress:
        Embedding batch size, torch thread count (``None`` leaves it) and progress bars.
    cache_dir:
        Folder for the embedding cache (``None`` disables it).
    seed:
        Seed for random initialisation.
    """

    def __init__(
        self,
        model: str = TINY_MODEL,
        pretrained: str | None = None,
        *,
        allow_random_init: bool = False,
        pretrained_text: bool = False,
        batch_size: int = 256,
        num_threads: int | None = None,
        progress: bool = False,
        cache_dir: str | Path | None = None,
        seed: int = 0,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        import open_clip

        register_model_configs()
        if num_threads:
            torch.set_num_threads(int(num_threads))
        self.name = model
        self.batch_size = int(batch_size)
        self.progress = progress
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.encoder_calls = 0
        self._fingerprint: str | None = None
        checkpoint: Path | None = None
        kwargs = dict(model_kwargs or {})

        if model.startswith(LOCAL_DIR):
            folder = Path(model[len(LOCAL_DIR) :])
            if not folder.is_dir():
                raise EncoderError(f"{model}: folder {folder} does not exist")
            if not (folder / "open_clip_config.json").is_file():
                raise EncoderError(f"{model}: {folder / 'open_clip_config.json'} is missing")
            checkpoint = _find_dir_checkpoint(folder)
            if checkpoint is None:
                raise EncoderError(
                    f"{model}: no weights file ({', '.join(CHECKPOINT_SUFFIXES)}) in {folder}; "
                    "write one with ClipEncoder.save_local_dir"
                )
            self.model_cfg = json.loads((folder / "open_clip_config.json").read_text())["model_cfg"]
            source, pretrained_arg = model, None
        else:
            base_cfg = open_clip.get_model_config(model)
            if base_cfg is None:
                raise EncoderError(
                    f"unknown open_clip model {model!r}; known: {open_clip.list_models()}"
                )
            self.model_cfg = {**base_cfg, **kwargs}
            source = model
            if pretrained is None:
                if not allow_random_init:
                    raise EncoderError(
                        f"model {model!r} has no weights: give pretrained=<tag or checkpoint file>, "
                        f"model=local-dir:<folder>, or allow_random_init=True to train it from scratch"
                    )
                pretrained_arg = None
            elif any(sep in pretrained for sep in ("/", os.sep)) or pretrained.endswith(
                CHECKPOINT_SUFFIXES
            ):
                checkpoint = Path(pretrained)
                if not checkpoint.is_file():
                    raise EncoderError(
                        f"checkpoint file {checkpoint} for model {model!r} does not exist; pass an existing "
                        "file (encoder.pretrained=/path/to/weights.bin) or a local-dir: folder"
                    )
                pretrained_arg = str(checkpoint)
            else:
                checkpoint = _cached_tag_file(model, pretrained, None)
                pretrained_arg = str(checkpoint)

        torch.manual_seed(seed)
        try:
            self.model, _, self.preprocess = open_clip.create_model_and_transforms(
                source, pretrained=pretrained_arg, pretrained_text=pretrained_text, **kwargs
            )
        except Exception as exc:  # open_clip/torch raise many types for a bad or mismatched file
            where = checkpoint if checkpoint is not None else model
            raise EncoderError(f"cannot load OpenCLIP model {model!r} from {where}: {exc}") from exc
        self.tokenizer = open_clip.get_tokenizer(source)
        self.model.eval()
        self.checkpoint = checkpoint

    # ------------------------------------------------------------------------------ identity
    @property
    def dim(self) -> int:
        return int(self.model_cfg["embed_dim"])

    def fingerprint(self) -> str:
        """A hash of the architecture and current weights (recomputed after :meth:`weights_changed`)."""
        if self._fingerprint is None:
            digest = hashlib.sha256(json.dumps(self.model_cfg, sort_keys=True).encode())
            for key, tensor in sorted(self.model.state_dict().items()):
                digest.update(key.encode())
                digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            self._fingerprint = digest.hexdigest()[:24]
        return self._fingerprint

    def weights_changed(self) -> None:
        """Tell the encoder its weights were updated (e.g. by training), so caches re-key."""
        self._fingerprint = None

    # ------------------------------------------------------------------------------ embedding
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised text embeddings, ``float32 [n, dim]``."""
        texts = [str(t) for t in texts]
        digest = hashlib.sha256("\0".join(texts).encode()).hexdigest()
        return self._cached(
            "text", digest, len(texts), lambda: self._run_batches(texts, self._encode_texts)
        )

    def embed_images(self, images: Sequence[Any]) -> np.ndarray:
        """L2-normalised image embeddings of PIL images (or HxWx3 uint8 arrays), ``float32 [n, dim]``."""
        from PIL import Image

        pil = [
            img
            if isinstance(img, Image.Image)
            else Image.fromarray(np.asarray(img, dtype=np.uint8))
            for img in images
        ]
        digest = hashlib.sha256()
        for img in pil:
            digest.update(f"{img.mode}{img.size}".encode())
            digest.update(img.tobytes())
        return self._cached(
            "image",
            digest.hexdigest(),
            len(pil),
            lambda: self._run_batches(pil, self._encode_images),
        )

    def image_tensor(self, images: Sequence[Any]) -> torch.Tensor:
        """Preprocessed pixel tensors ``[n, 3, S, S]`` (the model's evaluation transform)."""
        return torch.stack([self.preprocess(img.convert("RGB")) for img in images])

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(texts))

    def _encode_texts(self, batch: list[str]) -> torch.Tensor:
        return self.model.encode_text(self.tokenize(batch), normalize=True)

    def _encode_images(self, batch: list[Any]) -> torch.Tensor:
        return self.model.encode_image(self.image_tensor(batch), normalize=True)

    def _run_batches(self, items: list[Any], encode: Any) -> np.ndarray:
        from tqdm.auto import tqdm

        self.encoder_calls += 1
        self.model.eval()
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        starts = range(0, len(items), self.batch_size)
        with torch.no_grad():
            for lo in tqdm(
                starts, desc=f"embed {self.name}", disable=not self.progress, leave=False
            ):
                out[lo : lo + self.batch_size] = (
                    encode(items[lo : lo + self.batch_size]).float().numpy()
                )
        return out

    def _cached(self, modality: str, content: str, n: int, compute: Any) -> np.ndarray:
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.cache_dir is None:
            return compute()
        from encoders.storage import atomic_save_npy

        path = self.cache_dir / f"{modality}-{self.fingerprint()}-{content[:24]}.npy"
        if path.is_file():
            return np.load(path)
        vectors = compute()
        atomic_save_npy(path, vectors)
        return vectors

    # ------------------------------------------------------------------------------ saving
    def save_checkpoint(self, path: str | Path) -> Path:
        """Write the weights to one file (atomically); load with ``pretrained=<path>``."""
        from encoders.storage import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp:
            torch.save(self.model.state_dict(), tmp)
        return path

    def save_local_dir(self, folder: str | Path) -> str:
        """Write ``open_clip_config.json`` and the weights to ``folder``; returns the ``local-dir:`` name."""
        from encoders.storage import atomic_write_text

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.save_checkpoint(folder / "open_clip_pytorch_model.bin")
        preprocess_cfg = getattr(self.model.visual, "preprocess_cfg", {})
        config = {"model_cfg": self.model_cfg, "preprocess_cfg": dict(preprocess_cfg)}
        atomic_write_text(folder / "open_clip_config.json", json.dumps(config, indent=2))
        return f"{LOCAL_DIR}{folder}"
