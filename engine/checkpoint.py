"""Safe, self-describing model files: safetensors weights with JSON metadata in the header.

Nothing is ever unpickled. Files are written atomically (temporary file, fsync, rename), so a
crash or kill leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from engine import EngineError

FORMAT_NAME = "handwriting-studio-model"
FORMAT_VERSION = 1
MAX_HEADER = 100 * 1024 * 1024  # safetensors headers past this are refused as hostile


class ModelFileError(EngineError):
    """A model or checkpoint file that cannot be used; the message says why."""


class StorageError(EngineError, OSError):
    """A file could not be written (disk full, no permission, ...); any old file is intact.
    Also an OSError (with the original errno), so `except OSError` callers still catch it."""

    def __str__(self) -> str:  # the message alone, not OSError's "[Errno N] ..." form
        return str(self.args[0]) if self.args else super().__str__()


def _storage_error(path: Path, exc: OSError) -> StorageError:
    import errno

    why = {
        errno.ENOSPC: "the disk is full; free some space and try again",
        errno.EDQUOT: "the disk quota is exceeded; free some space and try again",
        errno.EACCES: "permission denied; choose a folder you can write to",
        errno.EPERM: "permission denied; choose a folder you can write to",
        errno.EROFS: "the file system is read-only; choose another folder",
    }.get(exc.errno, exc.strerror or str(exc))
    err = StorageError(f"could not save {path}: {why}")
    err.errno, err.filename = exc.errno, str(path)
    return err


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old file or the whole new one.
    Failures (disk full, no permission) raise StorageError and leave any old file as it was."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(exc, OSError) and not isinstance(exc, StorageError):
            raise _storage_error(path, exc) from exc
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def save_tensors(path, tensors: dict, metadata: dict) -> None:
    """Atomically save named tensors plus a JSON-able metadata dict."""
    import torch
    from safetensors.torch import save

    meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **metadata}
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    for k, v in flat.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{k} is not a tensor")
    atomic_write_bytes(path, save(flat, metadata={"json": json.dumps(meta)}))


def _zip_names(path: Path) -> list[str]:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except (OSError, zipfile.BadZipFile):
        return []


def _not_a_model(path: Path, head: bytes) -> ModelFileError:
    if head[:2] == b"PK":  # a zip: PyTorch's own format holds a pickle; NumPy's .npz does not
        names = _zip_names(path)
        if names and all(n.endswith(".npy") for n in names):
            return ModelFileError(
                f"{path} is a NumPy archive (.npz, such as a corpus), not a model file"
            )
    if head[:2] == b"PK" or (head[:1] == b"\x80" and head[1:2] in b"\x02\x03\x04\x05"):
        return ModelFileError(
            f"{path} looks like a pickle-based PyTorch file (.pt/.pth/.ckpt). Such files can run "
            "arbitrary code when loaded and are refused; convert it to safetensors first."
        )
    return ModelFileError(f"{path} is not a Handwriting Studio model file (not safetensors)")


def read_metadata(path) -> dict:
    """The JSON metadata of a model file, validated; no tensor data is read."""
    return read_header(path)[1]


def read_header(path) -> tuple[dict, dict]:
    """(safetensors header: tensor names -> dtype, shape, offsets; our metadata), validated;
    no tensor data is read."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"no model file at {path}")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(9)
        n = int.from_bytes(head[:8], "little") if len(head) == 9 else 0
        # a safetensors file: u64 header length, then a JSON object
        if not (0 < n <= min(MAX_HEADER, size - 8) and head[8:9] == b"{"):
            raise _not_a_model(path, head)
        raw = head[8:] + f.read(n - 1)
    try:
        header = json.loads(raw)
        meta = json.loads(header.get("__metadata__", {}).get("json", "null"))
    except (ValueError, AttributeError, TypeError, RecursionError) as exc:
        raise ModelFileError(f"{path} has an unreadable header: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path} is a safetensors file but not a Handwriting Studio model")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise ModelFileError(
            f"{path} uses model format version {version!r}; this version of Handwriting Studio "
            f"reads version {FORMAT_VERSION}. Update the application to open it."
        )
    return header, meta


def load_tensors(path, device="cpu") -> tuple[dict, dict]:
    """(tensors, metadata) of a file written by save_tensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = read_metadata(path)
    try:
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"{path} is damaged: {exc}") from None
    return tensors, meta


@dataclass
class LoadedModel:
    """A model rebuilt from its file alone, with what is needed to use it."""

    model: object  # torch.nn.Module
    kind: str  # "synthesis" | "prediction" | "text"
    config: object
    alphabet: object | None
    norm: object | None
    metadata: dict = field(default_factory=dict)
    path: Path | None = None


def save_model(path, model, alphabet=None, norm=None, training: dict | None = None) -> None:
    """Save a handwriting or text model with everything needed to rebuild it."""
    config = model.config
    meta = {
        "kind": getattr(config, "kind", "text"),
        "config": config.to_dict(),
        "alphabet": alphabet.to_dict() if alphabet is not None else None,
        "norm": norm.to_dict() if norm is not None else None,
        "training": training or {},
    }
    save_tensors(path, model.state_dict(), meta)


def load_model(path, device="cpu") -> LoadedModel:
    """Rebuild a model from a file written by save_model; refuses pickles and unknown formats."""
    from engine.alphabet import Alphabet
    from engine.strokes import NormStats

    tensors, meta = load_tensors(path, device)
    kind = meta.get("kind")
    try:
        if kind in ("synthesis", "prediction"):
            from engine.models import HandwritingConfig, HandwritingModel

            config = HandwritingConfig.from_dict(meta["config"])
            model = HandwritingModel(config)
        elif kind == "text":
            from engine.text_model import TextConfig, TextModel

            config = TextConfig.from_dict(meta["config"])
            model = TextModel(config)
        else:
            raise ModelFileError(f"{path} holds a model of unknown kind {kind!r}")
        model.load_state_dict(tensors)
        alphabet = Alphabet.from_dict(meta["alphabet"]) if meta.get("alphabet") else None
        norm = NormStats.from_dict(meta["norm"]) if meta.get("norm") else None
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{path} does not match its own description: {exc}") from None
    model.to(device).eval()
    return LoadedModel(model, kind, config, alphabet, norm, meta, Path(path))
