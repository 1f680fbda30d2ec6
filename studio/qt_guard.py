"""A guard against a reference-counting bug in the Qt binding.

PySide6 6.12.0 drops one reference to `True` on every `Signal.emit()` (measured: -1.0 per emit,
with or without a connected slot; 6.11.3 is clean). On Python 3.12 and later `True` is immortal
and nothing happens; on 3.10 and 3.11 its count reaches zero after a few thousand emits and the
interpreter aborts ("bool_dealloc: deallocating True or False"). The studio's workers emit
progress 30 times a second, so writing or training crashed the app within minutes.

pyproject.toml excludes that release; `check_and_protect()` is the second line for an
environment that has it anyway: it measures the leak with a few emits and, if there is one, gives
`True`, `False` and `None` a reference count so large that no session can exhaust it
(2**40 emits), and says so in the log.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

PROBE_EMITS = 64
HEADROOM = 1 << 40


def leaked_refs_per_emit() -> float:
    """References to True lost per Signal.emit() in this binding (0.0 when it is sound)."""
    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        fired = Signal(object)

    probe = _Probe()
    before = sys.getrefcount(True)
    for _ in range(PROBE_EMITS):
        probe.fired.emit(1)
    return (before - sys.getrefcount(True)) / PROBE_EMITS


def _add_references(obj, n: int) -> None:
    """Raise obj's CPython reference count by n (ob_refcnt is a PyObject's first field)."""
    cell = ctypes.c_ssize_t.from_address(id(obj))
    cell.value += n


def check_and_protect() -> bool:
    """True when the binding leaks and the singletons were protected."""
    leak = leaked_refs_per_emit()
    if leak <= 0:
        return False
    import PySide6

    log.error(
        "PySide6 %s loses %.0f reference(s) to True per signal emit, which would crash the "
        "studio on Python %d.%d; protected for this session. Install another version: "
        "pip install 'PySide6-Essentials!=6.12.0'",
        PySide6.__version__,
        leak,
        *sys.version_info[:2],
    )
    if sys.version_info < (3, 12) and hasattr(ctypes, "c_ssize_t"):
        for singleton in (True, False, None):
            _add_references(singleton, HEADROOM)
    return True
