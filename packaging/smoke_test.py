"""Prove a frozen build starts: the studio (offscreen) and the engine CLI, each writing ink.

    python3 packaging/smoke_test.py [dist/HandwritingStudio]

1. Studio: runs the app with HANDWRITING_STUDIO_SMOKE=1 and QT_QPA_PLATFORM=offscreen; the
   launcher opens the main window, loads the bundled model through the studio's own model
   manager, writes one line and prints `SMOKE OK ...` (see packaging/launcher.py).
2. Engine CLI: `HandwritingStudio engine sample --text ... --out smoke.png` with the bundled
   model (skipped with a note when the build bundles none), then checks the PNG.
User files go to a temporary HANDWRITING_STUDIO_HOME, never to the real user folders.
Exits non-zero on any failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(cmd: list[str], env: dict, timeout: float) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - t0


def main(argv: list[str]) -> int:
    folder = Path(argv[1]) if len(argv) > 1 else ROOT / "dist" / "HandwritingStudio"
    exe = folder / ("HandwritingStudio.exe" if os.name == "nt" else "HandwritingStudio")
    if not exe.is_file():
        print(f"no frozen app at {exe}; build it with packaging/handwriting-studio.spec")
        return 2
    home = Path(tempfile.mkdtemp(prefix="hs-smoke-"))
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "HANDWRITING_STUDIO_HOME": str(home),
        "HANDWRITING_STUDIO_SMOKE": "1",
    }
    env.pop("HANDWRITING_STUDIO_RESOURCES", None)  # the frozen app must find its own
    code, out, secs = run([str(exe)], env, timeout=300)
    line = next((x for x in out.splitlines() if x.startswith("SMOKE")), "(no SMOKE line)")
    print(f"studio: exit {code} in {secs:.1f} s: {line}")
    if code != 0 or not line.startswith("SMOKE OK"):
        print(out[-3000:])
        return 1

    env.pop("HANDWRITING_STUDIO_SMOKE")
    code, out, secs = run([str(exe), "engine", "--help"], env, timeout=120)
    missing = [c for c in ("sample", "data", "train", "eval", "text") if f"    {c} " not in out]
    print(f"engine --help: exit {code} in {secs:.1f} s, missing commands: {missing or 'none'}")
    if code != 0 or missing:
        print(out[-3000:])
        return 1
    model = folder / "_internal" / "resources" / "models" / "synthesis" / "model.safetensors"
    if not model.is_file():
        print(f"engine sample: skipped (no bundled synthesis model at {model})")
        return 0
    png = home / "smoke.png"
    cmd = [str(exe), "engine", "sample", "--text", "Hello from the build", "--seed", "1"]
    code, out, secs = run([*cmd, "--out", str(png)], env, timeout=300)
    ok = code == 0 and png.is_file() and png.stat().st_size > 1000
    print(f"engine sample: exit {code} in {secs:.1f} s, {png.stat().st_size if ok else 0} bytes")
    if not ok:
        print(out[-3000:])
        return 1
    print("SMOKE TEST PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
