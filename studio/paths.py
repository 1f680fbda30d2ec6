"""The one place that knows where the studio keeps user files (platformdirs).

`HANDWRITING_STUDIO_HOME` overrides everything (tests point it at a temporary folder, so they
never touch the real user directories): data, config and cache then live below it.
"""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "HandwritingStudio"
HOME_ENV = "HANDWRITING_STUDIO_HOME"


def _override() -> Path | None:
    home = os.environ.get(HOME_ENV)
    return Path(home) if home else None


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """User data (saved styles, captured ink, models trained in the app)."""
    home = _override()
    if home is not None:
        return _ensure(home / "data")
    import platformdirs

    return _ensure(Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)))


def config_dir() -> Path:
    home = _override()
    if home is not None:
        return _ensure(home / "config")
    import platformdirs

    return _ensure(Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)))


def log_dir() -> Path:
    """The studio's log file (studio.log): what to attach to a bug report."""
    home = _override()
    if home is not None:
        return _ensure(home / "logs")
    import platformdirs

    return _ensure(Path(platformdirs.user_log_dir(APP_NAME, appauthor=False)))


def styles_dir() -> Path:
    return _ensure(data_dir() / "styles")


def models_dir() -> Path:
    """Checkpoints of models trained in the studio, one folder per run."""
    return _ensure(data_dir() / "models")


def settings_file() -> Path:
    return config_dir() / "settings.ini"
