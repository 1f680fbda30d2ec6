"""Drive a short GPU lease: several synthesis runs side by side on one GPU, fitted to a deadline.

The handwriting networks' training step is bound by kernel launches (layer 1 and the window run
step by step), so one run leaves most of a big GPU idle; a few runs with different settings share
it at little cost to each. Used as three commands on a lent GPU machine (each call at most
10 minutes; the machine stays warm between calls):

    python3 resources/training/gpu_session.py start  --train-seconds 1480 --watch 560
    python3 resources/training/gpu_session.py watch  --watch 570 --out-dir "$OUT"
    python3 resources/training/gpu_session.py finish --out-dir "$OUT"
    # back here, for runs that continued a committed run (CONTINUE below):
    python3 resources/training/gpu_session.py restore FOLDER  # the folder files_at names

`start` launches every run with a far step horizon, measures each run's steps per second, then
restarts each (exact resume) with a cosine horizon that ends at the deadline. `finish` stops the
runs (SIGTERM writes a checkpoint), copies each run's best model and metrics to --out-dir and runs
the GPU speed benchmarks. Runs live in /tmp/hw-runs, outside the working tree that is re-synced.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNS = Path("/tmp/hw-runs")
COMMON = [
    "--preset", "paper", "--kind", "synthesis", "--optimizer", "adam",
    "--lr-schedule", "cosine", "--warmup-steps", "100", "--max-len", "400", "--point-step", "2.7",
    "--val-every", "250", "--val-max-sequences", "256", "--ckpt-every", "250",
    "--keep-last", "1",
]  # fmt: skip
# HW_DEVICE / HW_PRESET let the driver be tried on a CPU with a tiny model first
DEVICE = ["--device", os.environ.get("HW_DEVICE", "cuda"), "--threads", "4"]
if "HW_PRESET" in os.environ:
    COMMON[1] = os.environ["HW_PRESET"]
# The 2026-11-22 lease ran three eager runs side by side (lstm-b128, peep-b128 and lstm-b256 at
# lr 1.5e-3): ~1.0, 0.5 and 1.0 steps/s, best validation -2.37, -1.76 and -2.48 nats/point after
# 1,250 (500) steps, all worse than the CPU-trained small model. Eager steps are launch-bound,
# so the next lease replays each step as a CUDA graph (falls back to eager, logged, if capture
# fails). One paper-size run starts from scratch (its 45 MB resume state cannot travel; its best
# model comes back and can go on with --init-from) ...
RUN_SETTINGS = {
    "lstm-b128": ["--cell", "lstm", "--batch-size", "128", "--lr", "1e-3", "--cuda-graph"],
}
# ... and every run committed under resources/training/ listed here goes on from its newest
# checkpoint (exact resume of weights, optimiser and data order; a new cosine decay from where
# it stands, fitted to the deadline like the runs above), with a CUDA graph and a bigger batch,
# so that CPU sessions and GPU leases advance one curve. `finish` returns its newest checkpoint
# pair and a tar of run.json, metrics.jsonl and the best model; `restore` puts
# them back into the folder here, ready to commit.
CONTINUE = {
    "medium": (
        "resources/training/synthesis",
        ["--batch-size", "128", "--cuda-graph", "--lr", "5e-4"],
    ),
}
if "HW_CONTINUE" in os.environ:  # a CPU trial continues a small run of its own instead
    CONTINUE = {"cont": (os.environ["HW_CONTINUE"], ["--lr", "5e-4"])}


def _continuing() -> dict[str, tuple[Path, list[str]]]:
    return {n: (ROOT / src, extra) for n, (src, extra) in CONTINUE.items() if (ROOT / src).is_dir()}


def _names() -> list[str]:
    return [*RUN_SETTINGS, *_continuing()]


PROCS: dict[str, subprocess.Popen] = {}  # runs this process started (reaped through poll)


def _launch(name: str, extra: list[str]) -> int:
    log = open(RUNS / f"{name}.log", "a")  # noqa: SIM115 - handed to the child
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "train", "--out", str(RUNS / name), *extra],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip
    (RUNS / f"{name}.pid").write_text(str(p.pid))
    PROCS[name] = p
    return p.pid


def _alive(name: str) -> bool:
    if name in PROCS:  # our own child: poll() reaps it, so a finished run is not a zombie
        return PROCS[name].poll() is None
    try:
        os.kill(int((RUNS / f"{name}.pid").read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


def _stop(name: str, wait: float = 90.0) -> None:
    try:
        pid = int((RUNS / f"{name}.pid").read_text())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return
    end = time.time() + wait
    while time.time() < end and _alive(name):
        time.sleep(1)


def _metrics(name: str) -> list[dict]:
    path = RUNS / name / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return rows


def _status() -> None:
    now = time.strftime("%H:%M:%S")
    for name in _names():
        rows = _metrics(name)
        vals = [r for r in rows if r.get("validation")]
        last = rows[-1] if rows else {}
        v = vals[-1]["validation"] if vals else {}
        nan = float("nan")
        at = vals[-1]["step"] if vals else "-"
        print(
            f"{now} {name:10s} alive={_alive(name)!s:5s} step {last.get('step', 0):5d}"
            f"/{last.get('total_steps', 0)} train {last.get('loss_per_point', nan):7.3f}/pt"
            f" {last.get('points_per_s', 0):8.0f} pts/s"
            f" | valid {v.get('nats_per_sequence', nan):8.1f}/seq"
            f" {v.get('nats_per_point', nan):7.3f}/pt (step {at})",
            flush=True,
        )
    for name in _names():
        log = RUNS / f"{name}.log"
        text = log.read_text() if log.is_file() else ""
        said = [ln for ln in text.splitlines() if "CUDA graph" in ln]
        if said:
            print(f"{name}: {said[-1]}", flush=True)
        if text and not _alive(name):  # surface crashes at once
            print(f"--- {name}.log (not running) ---\n" + text[-1500:], flush=True)


def _watch(seconds: float, every: float = 60.0) -> None:
    end = time.time() + seconds
    while True:
        _status()
        left = end - time.time()
        if left <= 0:
            return
        time.sleep(min(every, left))


def _rate(name: str, window: float = 45.0) -> float | None:
    rows = [r for r in _metrics(name) if "elapsed" in r]
    if len(rows) < 2:
        return None
    last = rows[-1]
    first = next((r for r in rows if last["elapsed"] - r["elapsed"] <= window), rows[0])
    if last["step"] == first["step"]:
        return None
    return (last["step"] - first["step"]) / (last["elapsed"] - first["elapsed"])


def cmd_start(a) -> None:
    RUNS.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + a.train_seconds
    (RUNS / "deadline").write_text(str(deadline))
    if shutil.which("nvidia-smi"):
        query = "--query-gpu=name,memory.total,driver_version"
        subprocess.run(["nvidia-smi", query, "--format=csv"])
    for name, extra in RUN_SETTINGS.items():
        _launch(name, [*COMMON, *DEVICE, *extra, "--steps", "100000"])
    for name, (src, extra) in _continuing().items():
        if not (RUNS / name).exists():
            shutil.copytree(src, RUNS / name)
        pair = _newest_pair(RUNS / name)
        at = int(pair[0].stem.removeprefix("step-")) if pair else 0
        # a committed run usually ends its own schedule where it stopped: decay anew from here
        # (the warm-up mark only says where the cosine starts; the run is past it)
        sched = ["--lr-schedule", "cosine", "--warmup-steps", str(at), "--steps", "100000"]
        _launch(name, ["--resume", *DEVICE, *extra, *sched])
    time.sleep(a.probe)
    _status()
    for name in [*RUN_SETTINGS, *_continuing()]:
        rate = _rate(name)
        _stop(name)
        rows = _metrics(name)
        step = rows[-1]["step"] if rows else 0
        if rate is None:
            print(f"{name}: no rate measured; assuming 1 step/s", flush=True)
            rate = 1.0
        # restart overhead ~20 s; validation every 250 steps costs a few seconds more
        steps = step + int(rate * max(deadline - time.time() - 25, 60) * 0.97)
        print(f"{name}: {rate:.3f} steps/s at step {step}; horizon {steps}", flush=True)
        _launch(name, ["--resume", "--steps", str(steps), *DEVICE])
    _watch(max(0.0, a.watch - a.probe - 30))


def cmd_watch(a) -> None:
    _watch(a.watch)
    if a.out_dir:
        _collect(Path(a.out_dir), models=True)


def _collect(out: Path, models: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in RUN_SETTINGS:
        if models and (RUNS / name / "model.safetensors").is_file():
            shutil.copy(RUNS / name / "model.safetensors", out / f"{name}.safetensors")
        if (RUNS / name / "metrics.jsonl").is_file():
            shutil.copy(RUNS / name / "metrics.jsonl", out / f"{name}.metrics.jsonl")
    for name in _continuing():
        _collect_state(RUNS / name, out, name)


def _newest_pair(run: Path) -> tuple[Path, Path] | None:
    """The newest complete checkpoint (weights + optimiser/RNG/data-order state) of a run."""
    pairs = sorted(
        p for p in (run / "checkpoints").glob("step-*.safetensors")
        if not p.name.endswith(".state.safetensors")
        and p.with_suffix(".state.safetensors").is_file()
    )  # fmt: skip
    return (pairs[-1], pairs[-1].with_suffix(".state.safetensors")) if pairs else None


def _collect_state(run: Path, out: Path, name: str) -> None:
    """Three files (each under the 16 MiB a file that comes back may have, for a medium run):
    the newest checkpoint pair, and a tar of run.json, metrics.jsonl and the best model."""
    pair = _newest_pair(run)
    if pair is None:
        print(f"{name}: no checkpoint to collect", flush=True)
        return
    for old in out.glob(f"{name}-ckpt-*"):
        old.unlink()
    for src in pair:
        shutil.copy(src, out / f"{name}-ckpt-{src.name}")
    with tarfile.open(out / f"{name}-run.tar", "w") as tar:
        for part in ("run.json", "metrics.jsonl", "model.safetensors"):
            if (run / part).is_file():
                tar.add(run / part, arcname=part)
    print(f"{name}: collected {pair[0].name} and {name}-run.tar", flush=True)


def cmd_restore(a) -> None:
    """Put a continued run's collected files back into its folder under resources/training/."""
    src = Path(a.files)
    for name, (dest, _) in _continuing().items():
        tar_path = src / f"{name}-run.tar"
        ckpts = sorted(src.glob(f"{name}-ckpt-step-*.safetensors"))
        models = [p for p in ckpts if not p.name.endswith(".state.safetensors")]
        if not tar_path.is_file() or not models:
            print(f"{name}: nothing collected in {src}", flush=True)
            continue
        model = models[-1]
        state = model.with_suffix(".state.safetensors")
        if not state.is_file():
            raise SystemExit(f"{name}: {state.name} is missing; the checkpoint is incomplete")
        with tarfile.open(tar_path) as tar:
            names = set(tar.getnames())
            if not names <= {"run.json", "metrics.jsonl", "model.safetensors"}:
                raise SystemExit(f"{tar_path.name}: unexpected members {sorted(names)}")
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(dest, **safe)  # members checked above: three plain file names
        (dest / "checkpoints").mkdir(parents=True, exist_ok=True)
        for old in (dest / "checkpoints").glob("step-*"):
            old.unlink()
        prefix = f"{name}-ckpt-"
        for f in (model, state):
            shutil.copy(f, dest / "checkpoints" / f.name[len(prefix) :])
        print(f"{name}: {dest} now ends at {model.name[len(prefix) :]}", flush=True)


def cmd_finish(a) -> None:
    deadline = float((RUNS / "deadline").read_text())
    if time.time() < deadline:
        _watch(deadline - time.time())
    for name in _names():
        _stop(name)
    _status()
    out = Path(a.out_dir)
    _collect(out, models=True)
    if a.bench:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        py = [sys.executable, "-m", "bench.speed"]
        jobs = {
            "trainer": ["trainer", "--device", "cuda", "--variant", "peephole,lstm",
                        "--batch", "64", "--T", "700", "--iters", "6"],
            "train": ["train", "--device", "cuda", "--variant", "allcells,peephole,lstm",
                      "--batch", "64", "--T", "700", "--iters", "3"],
            "gpu": ["gpu", "--batch", "64", "--T", "700", "--iters", "3"],
        }  # fmt: skip
        results = {}
        for key, args in jobs.items():
            r = subprocess.run(py + args, cwd=ROOT, env=env, capture_output=True, text=True)
            print(f"bench {key}: rc {r.returncode}\n{r.stdout[-3000:]}{r.stderr[-2000:]}")
            try:
                results[key] = json.loads(r.stdout.strip().splitlines()[-1])
            except (IndexError, json.JSONDecodeError):
                results[key] = {"error": r.stderr[-2000:]}
        (out / "gpu-bench.json").write_text(json.dumps(results, indent=2))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start")
    s.add_argument("--train-seconds", type=float, default=1480)
    s.add_argument("--watch", type=float, default=560)
    s.add_argument("--probe", type=float, default=100)
    w = sub.add_parser("watch")
    w.add_argument("--watch", type=float, default=570)
    w.add_argument("--out-dir")
    f = sub.add_parser("finish")
    f.add_argument("--out-dir", required=True)
    f.add_argument("--no-bench", dest="bench", action="store_false")
    r = sub.add_parser("restore", help="(here, after a lease) put continued runs back")
    r.add_argument("files", help="the folder the lease's files came back to")
    a = p.parse_args(argv)
    cmds = {"start": cmd_start, "watch": cmd_watch, "finish": cmd_finish, "restore": cmd_restore}
    cmds[a.cmd](a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
