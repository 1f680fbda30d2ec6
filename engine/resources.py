"""One resolver for bundled assets (models, corpus, example styles).

Works from a source checkout / editable install (resources/ beside engine/), from a frozen
app (PyInstaller's sys._MEIPASS/resources) and wherever HANDWRITING_STUDIO_RESOURCES points.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV_VAR = "HANDWRITING_STUDIO_RESOURCES"


def resources_dir() -> Path:
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override)
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen) / "resources"
    return Path(__file__).resolve().parent.parent / "resources"


def resource(*parts: str) -> Path:
    return resources_dir().joinpath(*parts)


def default_corpus_path() -> Path:
    return resource("corpus", "unipen_lines.npz")


def model_file(path) -> Path:
    """A model given by the user: a folder (a bundled model's, or a training run directory)
    means the model.safetensors inside it; anything else is taken as the file itself."""
    p = Path(path)
    return p / "model.safetensors" if p.is_dir() else p


def default_model_path(kind: str = "synthesis") -> Path:
    """Bundled model directory for 'synthesis', 'prediction' or 'text'."""
    return resource("models", kind)
