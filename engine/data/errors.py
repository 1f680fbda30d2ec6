"""Errors raised by the data importers, the corpus and the native ink format."""

from __future__ import annotations

from engine import EngineError


class DataError(EngineError, ValueError):
    """A data file or directory that cannot be read (missing, corrupt, wrong format)."""


class FormatVersionError(DataError):
    """A file written by a newer (or unknown) version of the format."""
