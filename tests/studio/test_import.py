"""Nothing heavy at import time: the window's modules load without torch."""

import subprocess
import sys


def test_main_window_import_does_not_load_torch():
    code = (
        "import sys, studio.main_window, studio.app, studio.__main__; "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, "torch was imported while importing the studio's window"
