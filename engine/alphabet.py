"""The character set the synthesis network can write (Sec. 5, one-hot text c_u).

The paper used 57 symbols; we use the full printable ASCII range (95 symbols, space to '~').
Text is never silently cleaned: unsupported characters are reported with their positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine import EngineError

PRINTABLE_ASCII = "".join(chr(c) for c in range(0x20, 0x7F))


class UnsupportedCharactersError(EngineError, ValueError):
    """Raised when text holds characters outside the model's alphabet."""

    def __init__(self, text: str, bad: list[tuple[int, str]], allowed: str):
        self.text = text
        self.bad = bad  # (position, character) pairs, in order
        self.allowed = allowed
        chars = sorted({c for _, c in bad})
        shown = ", ".join(repr(c) + f" (U+{ord(c):04X})" for c in chars[:12])
        more = "" if len(chars) <= 12 else f" and {len(chars) - 12} more"
        super().__init__(
            f"The text contains {len(bad)} character(s) this model cannot write: {shown}{more}. "
            f"Allowed: {describe_charset(allowed)}."
        )


def describe_charset(chars: str) -> str:
    if chars == PRINTABLE_ASCII:
        return "printable ASCII (letters, digits, punctuation and space)"
    return repr(chars)


@dataclass(frozen=True)
class Alphabet:
    """Ordered symbols; index i is one-hot position i."""

    chars: str = PRINTABLE_ASCII

    def __post_init__(self):
        if len(set(self.chars)) != len(self.chars) or not self.chars:
            raise ValueError("alphabet symbols must be unique and non-empty")

    def __len__(self) -> int:
        return len(self.chars)

    @property
    def _index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.chars)}

    def unsupported(self, text: str) -> list[tuple[int, str]]:
        """(position, character) for each character the alphabet lacks."""
        allowed = set(self.chars)
        return [(i, c) for i, c in enumerate(text) if c not in allowed]

    def check(self, text: str) -> None:
        bad = self.unsupported(text)
        if bad:
            raise UnsupportedCharactersError(text, bad, self.chars)

    def encode(self, text: str) -> np.ndarray:
        """Indices of the characters, int64 (U,). Raises UnsupportedCharactersError."""
        self.check(text)
        index = self._index
        return np.fromiter((index[c] for c in text), dtype=np.int64, count=len(text))

    def decode(self, indices) -> str:
        return "".join(self.chars[int(i)] for i in indices)

    def to_dict(self) -> dict:
        return {"chars": self.chars}

    @classmethod
    def from_dict(cls, d: dict) -> Alphabet:
        return cls(chars=str(d["chars"]))
