"""Speed and memory suite: `python -m bench [--quick] [--json out.json]`.

Every figure is measured in its own process with pinned threads (bench/speed.py) and compared
with a peer-style baseline measured in the same run (bench/peer.py). Prints one table; what
each row means is in bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# path suffixes: @torch keeps the torch int8 step where the native step would run; @avx2 runs
# the native step's AVX2 code where AVX-512 VNNI would run


def _run(job: str, threads: int = 1, **opts) -> dict:
    path, _, kernel = opts.get("path", "").partition("@")
    if kernel:  # @torch: the torch step instead of the native one; @avx2: its AVX2 code
        opts = {**opts, "path": path, "kernel": kernel}
    cmd = [sys.executable, "-m", "bench.speed", job, "--threads", str(threads)]
    for k, v in opts.items():
        cmd += [f"--{k}", str(v)] if v != "" else [f"--{k}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def machine() -> dict:
    import numpy
    import torch

    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.date.today().isoformat(),
        "cpu": model,
        "cores": os.cpu_count(),
        "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU",
    }


def collect(quick: bool, sampling_only: bool = False) -> dict:
    """sampling_only: the 1-thread sampling and latency jobs (no 2-thread or training runs)."""
    from bench.speed import BUNDLED

    steps = 60 if quick else 200
    R: dict = {"machine": machine(), "quick": quick, "sampling_only": sampling_only}
    S = R["sample"] = {}
    paths = ("peer", "reference", "fast", "fast_int8", "fast_int8@avx2", "fast_int8@torch")
    paths += ("stepper", "stepper_bf16", "stepper_int8", "stepper_int8@avx2", "stepper_int8@torch")
    for threads in (1,) if sampling_only else (1, 2):
        for path in paths:
            # the native step runs on one thread whatever torch's count: the 2-thread int8
            # rows are the torch step's
            if threads == 2 and (path in ("reference", "stepper_bf16") or "int8" in path):
                if not path.endswith("@torch"):
                    continue
            # 2 threads at full length too: 100 steps swung 0.28-0.38 ms per step on one box
            S[f"{path}/t{threads}/b1"] = _run("sample", threads, path=path, steps=steps)
    for path in ("reference", "fast", "fast_int8", "fast_int8@avx2", "fast_int8@torch"):
        S[f"{path}/t1/b8"] = _run("sample", 1, path=path, batch=8, steps=steps // 2)
    model = "paper"
    if BUNDLED.exists():
        model = "bundled"
        bundled = ("reference", "fast", "fast_int8", "fast_int8@avx2", "fast_int8@torch")
        for path in bundled + (
            "stepper",
            "stepper_int8",
            "stepper_int8@avx2",
            "stepper_int8@torch",
        ):
            S[f"{path}/t1/bundled"] = _run("sample", 1, path=path, model="bundled", steps=steps)
        if not sampling_only:  # the torch step at 2 threads (engine.fast.sampling_threads)
            for path in ("fast_int8@torch", "stepper_int8@torch"):
                S[f"{path}/t2/bundled"] = _run("sample", 2, path=path, model="bundled", steps=steps)
        S["stepper_int8_all/t1/bundled"] = _run(
            "sample", 1, path="stepper_int8", model="bundled", steps=steps, **{"int8-all": ""}
        )
    R["latency"] = {p: _run("latency", 1, path=p, model=model) for p in ("reference", "fast")}
    R["latency_model"] = model
    if sampling_only:
        return R
    T = 100 if quick else 700  # the training shape: batch 32, T = 700
    Tr = R["train"] = {}
    rounds = 2
    # lstm_bf16 (emulated bf16, 0.3-0.4x) only in --quick: at T = 700 it costs minutes
    one = "allcells,allcells_flushed,peephole,lstm" + (",lstm_bf16" if quick else "")
    plan = ((1, one, rounds), (2, "allcells,lstm", 1))
    for threads, variants, iters in plan:
        res = _run("train", threads, variant=variants, batch=32, T=T, iters=iters)
        for v in variants.split(","):
            Tr[f"{v}/t{threads}"] = res.get(v, res)
    R["train_T"] = T
    if not quick:
        R["trainmem"] = {
            v: _run("trainmem", 1, variant=v, batch=32, T=700) for v in ("peephole", "lstm")
        }
        R["loss"] = _run("loss", 1, batch=8, T=150, iters=30)
        R["denormals"] = _run("denormals", 1, batch=32, T=700, iters=4)
    R["gpu"] = _run("gpu", 1, batch=32, T=T)
    return R


def _fmt(x, nd=3):
    return "-" if x is None else f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def table(R: dict) -> str:
    rows = [("figure", "value", "cpu", "baseline", "ratio", "target")]

    def add(name, v, cpu=None, base=None, target="", nd=3, higher=False):
        ratio = "-"
        if base and v:
            ratio = f"{(v / base if higher else base / v):.2f}x"
        rows.append((name, _fmt(v, nd), _fmt(cpu, nd), _fmt(base, nd), ratio, target))

    S = R["sample"]
    g = lambda k, f="wall_ms": S.get(k, {}).get(f)  # noqa: E731

    def said(label: str, k: str) -> str:
        """A "native" label as the row's job reported its step: runs before the native step
        (no kernel_used) or where it could not run say what ran instead."""
        kernel = S.get(k, {}).get("kernel_used") or ""
        if "native" not in label or kernel.startswith("native"):
            return label
        return label.replace("native", "torch ops" if kernel == "torch" else "weights")

    for t in (1, 2):
        if f"peer/t{t}/b1" not in S:
            continue
        base = g(f"peer/t{t}/b1")
        add(f"sample ms/step peer TorchScript, {t} thr", base, g(f"peer/t{t}/b1", "cpu_ms"))
        for path, label in (
            ("reference", "engine model.step"),
            ("fast", "engine fast (whole step)"),
            ("fast_int8", "engine fast, int8 native (whole step)"),
            ("fast_int8@avx2", "engine fast, int8 native AVX2 (whole step)"),
            ("fast_int8@torch", "engine fast, int8 torch ops (whole step)"),
            ("stepper", "fast network only"),
            ("stepper_bf16", "fast network, bf16 weights"),
            ("stepper_int8", "fast network, int8 native"),
            ("stepper_int8@avx2", "fast network, int8 native AVX2"),
            ("stepper_int8@torch", "fast network, int8 torch ops"),
        ):
            k = f"{path}/t{t}/b1"
            if k in S:
                tgt = "<= 0.3" if path.startswith("fast") else ""
                add(f"sample ms/step {said(label, k)}, {t} thr", g(k), g(k, "cpu_ms"), base, tgt)
    base = g("peer/t1/b1")
    for path in ("reference", "fast", "fast_int8", "fast_int8@avx2", "fast_int8@torch"):
        k = f"{path}/t1/b8"
        if k in S:
            lab = path.replace("_int8@torch", ", int8 torch ops").replace("_int8", ", int8 native")
            lab = lab.replace("@avx2", " AVX2")
            lab = said(lab, k)
            add(f"sample ms/sample-step {lab}, batch 8", g(k, "per_sample_ms"), None, base)
    for path, label in (
        ("reference", "model.step"),
        ("fast", "fast"),
        ("fast_int8", "fast, int8 asked, native"),
        ("fast_int8@avx2", "fast, int8 asked, native AVX2"),
        ("fast_int8@torch", "fast, int8 asked, torch ops"),
        ("stepper", "network only"),
        ("stepper_int8", "network only, int8 asked, native"),
        ("stepper_int8@avx2", "network only, int8 asked, native AVX2"),
        ("stepper_int8@torch", "network only, int8 asked, torch ops"),
        ("stepper_int8_all", "network only, all int8"),
    ):
        for t in (1, 2):
            k = f"{path}/t{t}/bundled"
            if k in S:
                used = g(k, "weights_used")
                lab = said(label, k) + (f" (used {used})" if "int8" in path and used else "")
                peer = g(f"peer/t{t}/b1")
                add(f"sample ms/step bundled model, {lab}, {t} thr", g(k), g(k, "cpu_ms"), peer)
    L = R["latency"]
    lb = L["reference"].get("first_ink_ms")
    add(
        f"first ink ms ({R['latency_model']}), fast",
        L["fast"].get("first_ink_ms"),
        None,
        lb,
        "<= 50",
    )
    add(
        f"40-char line s ({R['latency_model']}, {L['fast'].get('line40_points')} pts), fast",
        L["fast"].get("line40_s"),
        None,
        L["reference"].get("line40_s"),
        "<= 0.3",
    )
    if "line40_best_s" in L["fast"]:
        add(
            f"40-char line s ({R['latency_model']}), fast, best of {L['fast']['tries']}",
            L["fast"]["line40_best_s"],
            None,
            L["reference"].get("line40_s"),
            "<= 0.3",
        )
    Tr = R.get("train", {})
    for t in (1, 2):
        base = Tr.get(f"allcells/t{t}", {}).get("timesteps_per_s")
        for v in ("allcells", "allcells_flushed", "peephole", "lstm", "lstm_bf16"):
            r = Tr.get(f"{v}/t{t}")
            if r is None:
                continue
            tgt = ">= 3x" if v.startswith("lstm") else ""
            name = f"train timesteps/s {v} B32 T{R['train_T']}, {t} thr"
            add(name, r.get("timesteps_per_s"), r.get("cpu_timesteps_per_s"), base, tgt, 0, True)
    for v, r in R.get("trainmem", {}).items():
        add(f"train peak RSS MB {v} B32 T700", r.get("maxrss_mb"), None, None, "", 0)
    k = "fast/t1/b1"
    add("sample peak RSS MB fast (3x400)", S.get(k, {}).get("maxrss_mb"), None, None, "", 0)
    loss = R.get("loss")
    if loss and "peephole" in loss:
        for v in ("peephole", "lstm"):
            add(f"loss nats/pt valid {v} ({loss['source']}, 30 steps)", loss[v]["valid"])
    D = R.get("denormals") or {}
    for k, label in (("sample_paper", "3x400 random, 40 chars"), ("sample_bundled", "bundled")):
        if "flushed_ms" in D.get(k, {}):
            r = D[k]
            add(
                f"sample ms/step denormals flushed ({label})",
                r["flushed_ms"],
                None,
                r["unflushed_ms"],
            )
    r = D.get("trainer", {})
    if "flushed_s" in r:
        name = (
            f"trainer s / {r['steps']} steps, denormals flushed (paper, B{r['batch']} T<={r['T']})"
        )
        add(name, r["flushed_s"], None, r["unflushed_s"])
    gpu = R.get("gpu", {})
    if R.get("sampling_only"):
        pass
    elif not gpu.get("gpu"):
        rows.append(("GPU", "no GPU", "-", "-", "-", ""))
    else:
        add(f"GPU fast step ms ({gpu['gpu']})", gpu["step"]["wall_ms"])
        add("GPU train timesteps/s lstm", gpu["train"]["timesteps_per_s"], nd=0)
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    m = R["machine"]
    head = (
        f"{m['date']}  {m['cpu']}  cores={m['cores']}  load={m['load_avg']}  torch {m['torch']}"
        f"  numpy {m['numpy']}  {m['gpu']}\n"
        "value = wall-clock median of 3 repeats; cpu = the same figure from process CPU time; "
        "ratio = baseline / value for times, value / baseline for throughput"
    )
    return head + "\n" + "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer steps; skip memory and loss runs")
    p.add_argument("--json", help="also write the raw results to this file")
    p.add_argument("--from-json", help="print the table of a saved run")
    p.add_argument(
        "--sampling-only",
        action="store_true",
        help="only the 1-thread sampling and latency jobs (leaves a busy second core alone)",
    )
    a = p.parse_args(argv)
    if a.from_json:
        R = json.loads(Path(a.from_json).read_text())
    else:
        R = collect(a.quick, a.sampling_only)
    if a.json:
        Path(a.json).write_text(json.dumps(R, indent=1))
    print(table(R))
    return 0


if __name__ == "__main__":
    sys.exit(main())
