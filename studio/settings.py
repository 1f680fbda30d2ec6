"""Persistent settings: a QSettings ini file in the platformdirs config dir (studio.paths)."""

from __future__ import annotations

from PySide6.QtCore import QSettings

from studio import paths


def open_settings() -> QSettings:
    return QSettings(str(paths.settings_file()), QSettings.Format.IniFormat)


def get(settings: QSettings, key: str, default, kind=None):
    """A typed read that survives garbage in the file (falls back to `default`)."""
    value = settings.value(key, default)
    kind = kind or type(default)
    try:
        if kind is bool:
            return value if isinstance(value, bool) else str(value).lower() in ("1", "true")
        return kind(value)
    except (TypeError, ValueError):
        return default
