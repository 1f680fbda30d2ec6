"""Saved handwriting styles: a captured line plus its text, stored as native ink JSON.

User styles live in paths.styles_dir(); example styles ship in resources/styles/ (read-only).
A style becomes a sampling primer (Sec. 5.5) through engine.data.preprocess.preprocess_ink,
the same pipeline the training data went through, so the primer is in the model's scale.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from engine import EngineError
from studio import paths

_BAD_NAME = re.compile(r'[\\/:*?"<>|\x00-\x1f]')


class StyleError(EngineError, ValueError):
    """A style name or file that cannot be used."""


@dataclass(frozen=True)
class Style:
    name: str
    path: Path
    builtin: bool = False

    @property
    def label(self) -> str:
        return f"{self.name} (example)" if self.builtin else self.name


def bundled_styles_dir() -> Path:
    from engine.resources import resource

    return resource("styles")


def check_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise StyleError("a style needs a name")
    if len(name) > 80 or _BAD_NAME.search(name) or name.startswith("."):
        raise StyleError(
            f"{name!r} cannot be used as a style name: use up to 80 characters without "
            '\\ / : * ? " < > | and not starting with a dot'
        )
    return name


class StyleStore:
    def __init__(self, user_dir: Path | None = None, bundled_dir: Path | None = None):
        self.user_dir = Path(user_dir) if user_dir else paths.styles_dir()
        self.bundled_dir = Path(bundled_dir) if bundled_dir else bundled_styles_dir()

    def list(self) -> list[Style]:
        user = [Style(p.stem, p) for p in sorted(self.user_dir.glob("*.json"))]
        builtin = []
        if self.bundled_dir.is_dir():
            builtin = [Style(p.stem, p, True) for p in sorted(self.bundled_dir.glob("*.json"))]
        return user + builtin

    def find(self, name: str) -> Style | None:
        return next((s for s in self.list() if s.name == name), None)

    def _user_path(self, name: str) -> Path:
        return self.user_dir / f"{check_name(name)}.json"

    def save(self, name: str, ink, overwrite: bool = False) -> Style:
        from engine.data.native import save_ink

        if not ink.text.strip():
            raise StyleError("type the text you wrote before saving the style")
        if not ink.strokes:
            raise StyleError("write something on the capture canvas before saving the style")
        path = self._user_path(name)
        if path.exists() and not overwrite:
            raise StyleError(f"a style called {name!r} already exists")
        self.user_dir.mkdir(parents=True, exist_ok=True)
        save_ink(ink, path)
        return Style(path.stem, path)

    def load(self, style: Style):
        from engine.data.native import load_ink

        return load_ink(style.path)

    def rename(self, style: Style, new_name: str) -> Style:
        if style.builtin:
            raise StyleError("example styles cannot be renamed; save a copy under a new name")
        target = self._user_path(new_name)
        if target.exists():
            raise StyleError(f"a style called {new_name!r} already exists")
        style.path.rename(target)
        return Style(target.stem, target)

    def delete(self, style: Style) -> None:
        if style.builtin:
            raise StyleError("example styles cannot be deleted")
        style.path.unlink(missing_ok=True)


def primer_from_ink(ink, alphabet=None):
    """An engine.sampler.Primer from captured ink and the text written on it."""
    from engine.alphabet import Alphabet
    from engine.data.preprocess import preprocess_ink
    from engine.sampler import Primer

    text = " ".join(ink.text.split())
    if not text:
        raise StyleError("the style has no text; type what was written on the canvas")
    (alphabet or Alphabet()).check(text)
    return Primer(preprocess_ink(ink), text)
