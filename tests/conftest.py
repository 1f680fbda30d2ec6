"""Test-wide setup: Qt must run headless, and pyqtgraph must use PySide6."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")

# CI runs the property tests with a fixed seed (HYPOTHESIS_PROFILE=ci in .ci/run) so a landing is
# never decided by a lucky draw; locally they keep drawing new examples and finding new bugs.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
