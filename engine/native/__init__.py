"""The native int8 sampling step (step.c), built on first use with the machine's C compiler.

`library()` returns the loaded library, or None with the reason it cannot be used here: no C
compiler, a CPU with neither AVX-512 VNNI nor AVX2 + FMA, not x86-64, or HANDWRITING_NATIVE=0 in
the environment; engine.fast.FastStepper then keeps its torch step, which computes the same
thing, and nothing else changes. `level()` is the instruction set the step uses: 2 (AVX-512
VNNI) or 1 (AVX2), the best this CPU has; HANDWRITING_NATIVE=avx2 asks for AVX2 where both run
(tests, benches).

The built library is cached per source under the user's cache directory
(HANDWRITING_NATIVE_CACHE overrides it), so the compiler runs once per machine (about 1 s). A
library built ahead (`build_library`, as packaging/handwriting-studio.spec does for the desktop
build) and placed next to step.c is used first, so a frozen app needs no compiler.

`Packed` lays an engine.fast.Int8Weight out for the kernel; `Ctx` mirrors step.c's struct
(checked against the library's own sizeof at load).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("step.c")
ABI = 3
LEVELS = {2: "AVX-512 VNNI", 1: "AVX2"}
MAX_LAYERS = 16
ENV_SWITCH = "HANDWRITING_NATIVE"
ENV_CACHE = "HANDWRITING_NATIVE_CACHE"

_lock = threading.Lock()
_loaded: tuple[ctypes.CDLL | None, str] | None = None
_level = 0

_p = ctypes.c_void_p
_i = ctypes.c_int32


class QMat(ctypes.Structure):
    _fields_ = [("q", _p), ("scale", _p), ("rowsum", _p), ("K", _i), ("N", _i)]


class Ctx(ctypes.Structure):
    _fields_ = [
        *[(n, _i) for n in ("level", "B", "H", "L", "K", "Up", "synthesis", "ny", "V")],
        *[(n, _p) for n in ("x", "Wx", "b", "G", "gates", "hbuf")],
        ("c", _p * MAX_LAYERS),
        ("peep_if", _p * MAX_LAYERS),
        ("peep_o", _p * MAX_LAYERS),
        ("Wrec", QMat * MAX_LAYERS),
        *[(n, _p) for n in ("Wy", "by", "y", "Wp", "bp", "abk", "kappa", "phi", "gw", "P")],
        *[(n, _p) for n in ("onehot", "Wwd", "wbuf", "uh", "ul", "acch", "accl", "qlo", "qs")],
    ]


def _cache_dir() -> Path:
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    try:
        import platformdirs

        return Path(platformdirs.user_cache_dir("handwriting-studio", appauthor=False)) / "native"
    except Exception:  # platformdirs missing or no home: a per-user temp folder still works
        return Path(tempfile.gettempdir()) / f"handwriting-studio-native-{os.getuid()}"


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _build(cc: str, target: Path) -> None:
    """Compile step.c into target (through a temp file and a rename: two processes building at
    once each write their own file, and the loser's rename replaces an identical library)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        cmd = [cc, "-O3", "-shared", "-fPIC", "-o", tmp, str(SOURCE)]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if run.returncode != 0:
            raise RuntimeError(f"{Path(cc).name} failed: {run.stderr.strip()[-300:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def library_name() -> str:
    """The file name of the library built from this step.c (the source's hash is in it, so an
    edited source never loads a stale library)."""
    key = hashlib.sha256(SOURCE.read_bytes() + platform.machine().encode()).hexdigest()[:16]
    return f"step-{key}.so"


def build_library(directory) -> Path:
    """Build the library into `directory` now (packaging); raises with the compiler's error."""
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (set CC, or install gcc or clang)")
    target = Path(directory) / library_name()
    _build(cc, target)
    return target


def _supported_platform() -> bool:
    return sys.platform in ("linux", "darwin") and platform.machine().lower() in (
        "x86_64",
        "amd64",
    )


def _open(path: Path) -> tuple[ctypes.CDLL | None, str, bool]:
    """(library, "", False), or (None, why, damaged): damaged when the file itself is bad."""
    global _level
    try:
        lib = ctypes.CDLL(str(path))
        lib.hw_abi.restype = ctypes.c_int
        lib.hw_cpu_level.restype = ctypes.c_int
        lib.hw_ctx_size.restype = ctypes.c_size_t
        lib.hw_step.argtypes = [ctypes.c_void_p]
        lib.hw_step.restype = None
    except (OSError, AttributeError) as exc:
        return None, f"could not load {path}: {exc}", True
    if lib.hw_abi() != ABI or lib.hw_ctx_size() != ctypes.sizeof(Ctx):
        return None, f"{path} does not match this engine (delete it to rebuild)", True
    cpu = lib.hw_cpu_level()
    if cpu == 0:
        return None, "this CPU has neither AVX-512 VNNI nor AVX2 with FMA", False
    asked = os.environ.get(ENV_SWITCH, "").strip().lower()
    _level = 1 if asked == "avx2" else cpu
    return lib, "", False


def _load() -> tuple[ctypes.CDLL | None, str]:
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return None, f"disabled by {ENV_SWITCH}={os.environ[ENV_SWITCH]}"
    if not _supported_platform():
        return None, f"the native step is for x86-64 Linux and macOS, not {sys.platform}"
    if not SOURCE.is_file():
        return None, f"{SOURCE} is missing"
    name = library_name()
    if SOURCE.with_name(name).exists():  # built ahead (a desktop build)
        return _open(SOURCE.with_name(name))[:2]
    target = _cache_dir() / name
    if target.exists():
        lib, why, damaged = _open(target)
        if not damaged:
            return lib, why
        # a damaged cached library (a crash mid-write by another tool, a disk error): rebuild
    cc = _compiler()
    if cc is None:
        return None, "no C compiler found (set CC, or install gcc or clang)"
    try:
        _build(cc, target)
    except Exception as exc:
        return None, f"could not build the native step: {exc}"
    return _open(target)[:2]


def level() -> int:
    """The instruction set the native step uses (LEVELS), 0 without the library."""
    return _level if library()[0] is not None else 0


def library() -> tuple[ctypes.CDLL | None, str]:
    """(the library, "") or (None, why not); built and loaded once per process."""
    global _loaded
    with _lock:
        if _loaded is None:
            _loaded = _load()
        return _loaded


def reset_for_tests() -> None:
    """Forget the loaded library so the next library() looks again (environment changes)."""
    global _loaded, _level
    with _lock:
        _loaded, _level = None, 0


class Packed:
    """An int8 matrix laid out for step.c at `level`: AVX-512 VNNI, outputs in blocks of 16 and
    inputs in groups of 4; AVX2, blocks of 8 and groups of 2."""

    def __init__(self, W, level: int):
        q = W.q  # (N, K) int8, W ~= q.t() * scale
        N, K = q.shape
        block, group = (16, 4) if level == 2 else (8, 2)
        Np, Kp = -(-N // block) * block, -(-K // group) * group
        full = torch.zeros(Np, Kp, dtype=torch.int8)
        full[:N, :K] = q
        self.q = full.view(Np // block, block, Kp // group, group).permute(0, 2, 1, 3).contiguous()
        self.scale = torch.zeros(-(-N // 16) * 16)  # padded for either layout
        self.scale[:N] = W.scale.float()
        self.rowsum = torch.zeros(-(-N // 16) * 16, dtype=torch.int32)
        self.rowsum[:N] = q.to(torch.int32).sum(1)
        self.K, self.N = K, N  # the kernel pads K itself

    def qmat(self) -> QMat:
        return QMat(
            self.q.data_ptr(), self.scale.data_ptr(), self.rowsum.data_ptr(), self.K, self.N
        )
