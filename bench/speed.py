"""Benchmark jobs. Each runs in its own process with pinned threads and prints one JSON line:

    python -m bench.speed JOB --threads N [options]

The suite (`python -m bench`) runs them and prints the table; see bench/README.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "resources" / "models" / "synthesis" / "model.safetensors"
CORPUS = ROOT / "resources" / "corpus" / "unipen_lines.npz"
TEXT40 = "The quick brown fox jumps over a lazy dog"[:40]


def _pin(threads: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _timed(fn, n: int, repeats: int = 3) -> dict:
    """Median over `repeats` of the mean wall and CPU (process) time per call, in ms."""
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn(n)
        walls.append((time.perf_counter() - w) / n * 1e3)
        cpus.append((time.process_time() - c) / n * 1e3)
    return {"wall_ms": statistics.median(walls), "cpu_ms": statistics.median(cpus), "walls": walls}


def _model(which: str, device="cpu"):
    """(model, alphabet, norm) for 'paper' (random 3 x 400) or 'bundled' (the shipped model)."""
    import torch

    from engine.alphabet import Alphabet
    from engine.models import HandwritingModel, preset
    from engine.strokes import NormStats

    if which == "bundled":
        from engine.checkpoint import load_model

        lm = load_model(BUNDLED, device)
        return lm.model, lm.alphabet, lm.norm or NormStats()
    torch.manual_seed(0)
    return HandwritingModel(preset("paper")).to(device).eval(), Alphabet(), NormStats()


def _ready_stepper(model, alphabet, weights: str, batch: int):
    """A FastStepper reset for TEXT40 at `batch` rows (its step is chosen at reset)."""
    import torch

    from engine.fast import FastStepper

    s = FastStepper(model, weight_dtype=weights)
    idx = torch.as_tensor(alphabet.encode(TEXT40))[None].expand(batch, -1)
    s.reset(batch, model.encode_text(idx))
    return s


def _kernel(stepper) -> str:
    """Which step a FastStepper runs: "torch", or "native" and its instruction set."""
    return stepper.kernel if stepper.native_isa is None else f"native {stepper.native_isa}"


# -- sampling ------------------------------------------------------------------------------------
def job_sample(a) -> dict:
    """ms per sampling step. --path: peer | reference | fast[_bf16|_int8] (generate, the whole
    step; plain "fast" = fp32 weights) | stepper[_bf16|_int8] (FastStepper.step only)."""
    import torch

    from engine.sampler import generate

    steps = a.steps
    if a.path == "peer":
        from bench.peer import PeerSampler

        torch.manual_seed(0)
        peer = PeerSampler().eval()
        onehot = torch.zeros(1, 41, 95)
        onehot[0, torch.arange(40), torch.randint(0, 95, (40,))] = 1

        def run(n):
            for _ in itertools.islice(peer.sample(onehot, n), n):
                pass

        run(20)
        out = _timed(run, steps)
        out["per_sample_ms"] = out["wall_ms"]
        out["maxrss_mb"] = _maxrss_mb()
        return out
    model, alphabet, norm = _model(a.model)
    if a.int8_all:  # quantise every matrix, whatever the model's size (engine.fast size rule off)
        import engine.fast

        engine.fast.INT8_MIN_MODEL = engine.fast.INT8_MIN_WEIGHTS = 0
    used = None
    if a.path.startswith("stepper"):
        s = _ready_stepper(model, alphabet, a.path.partition("_")[2] or "fp32", a.batch)
        used, kernel = s.weights, _kernel(s)
        x = torch.zeros(a.batch, 3)

        def run(n):
            for _ in range(n):
                s.step(x)

    else:
        fast = a.path.startswith("fast")
        kw = dict(alphabet=alphabet, norm=norm, seed=0, batch=a.batch, fast=fast, bias=0.5)
        kw["weights"] = a.path.partition("_")[2] or "fp32"  # "fast" stays the fp32 figure
        kernel = None
        if fast:  # what generate's stepper will use
            probe = _ready_stepper(model, alphabet, kw["weights"], a.batch)
            used, kernel = probe.weights, _kernel(probe)

        def run(n):
            # a trained model stops at the end of its line (Sec. 5.3): start the line again
            # until n steps have run, so the figure is per step whatever n is
            while n > 0:
                for _ in itertools.islice(generate(model, TEXT40, steps_per_char=200, **kw), n):
                    n -= 1

    run(20)
    out = _timed(run, steps)
    out["per_sample_ms"] = out["wall_ms"] / a.batch
    out["maxrss_mb"] = _maxrss_mb()
    out["weights_used"] = used
    out["kernel_used"] = kernel
    return out


def job_latency(a) -> dict:
    """Time from generate() to the first SampleStep, and a whole 40-character line
    (--path reference or fast; --weights for the fast path, default auto)."""
    from engine.sampler import generate, sample

    model, alphabet, norm = _model(a.model)
    kw = dict(alphabet=alphabet, norm=norm, seed=0, fast=a.path != "reference", bias=0.5)
    kw["weights"] = a.weights
    next(generate(model, TEXT40, **kw))  # warm-up
    firsts = []
    for _ in range(5):
        t = time.perf_counter()
        next(generate(model, TEXT40, **kw))
        firsts.append((time.perf_counter() - t) * 1e3)
    lines, points = [], 0
    for seed in range(3):
        t = time.perf_counter()
        s = sample(model, TEXT40, **{**kw, "seed": seed})[0]
        lines.append(time.perf_counter() - t)
        points = len(s.offsets)
    from engine.layout import DEFAULT_TRIES, best_line

    best = []  # the studio's and the CLI's default: best of DEFAULT_TRIES per line
    for seed in range(3):
        t = time.perf_counter()
        best_line(model, TEXT40, DEFAULT_TRIES, **{**kw, "seed": seed})
        best.append(time.perf_counter() - t)
    return {
        "first_ink_ms": statistics.median(firsts),
        "line40_s": statistics.median(lines),
        "line40_points": points,
        "line40_best_s": statistics.median(best),
        "tries": DEFAULT_TRIES,
    }


# -- training ------------------------------------------------------------------------------------
def _batch(B, T, U, seed=0):
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, 3, generator=g)
    x[..., 2] = (torch.rand(B, T, generator=g) < 0.05).float()
    idx = torch.randint(0, 95, (B, U), generator=g)
    return x, idx


def _train_model(variant: str, device="cpu"):
    import torch

    from engine.models import HandwritingModel, preset

    torch.manual_seed(0)
    if variant.startswith("allcells"):
        from bench.peer import AllCellsSynthesis

        return AllCellsSynthesis().to(device).train()
    cell = "peephole" if variant == "peephole" else "lstm"
    return HandwritingModel(preset("paper", cell=cell)).to(device).train()


def _train_step(model, variant, x, idx, opt):
    import torch

    from engine.mixture import sequence_nll, split_params

    inp = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], 1)  # x_1 = 0 (Sec. 2)
    onehot = torch.nn.functional.one_hot(idx, 95).to(x.dtype)
    onehot = torch.cat([onehot, torch.zeros_like(onehot[:, :1])], 1)
    ctx = (
        torch.autocast(x.device.type, dtype=torch.bfloat16)
        if variant.endswith("bf16")
        else torch.autocast(x.device.type, enabled=False)
    )
    with ctx:
        if variant.startswith("allcells"):
            y = model(inp, onehot)
        else:
            y, _ = model(inp, onehot=onehot)
    loss = sequence_nll(split_params(y.float()), x)
    opt.zero_grad(set_to_none=True)
    loss.total.backward()
    opt.step()
    return loss.per_point.item()


def job_train(a) -> dict:
    """Throughput of one or several variants (comma-separated). Several variants are timed
    round-robin in one process, one optimiser step each per round, so a change in machine
    load hits all of them alike; the median over rounds is reported. The engine's variants
    (peephole, lstm, lstm_bf16) run with denormals flushed, as engine.trainer does; "allcells" is
    the peer-style loop as such code runs (IEEE denormals), "allcells_flushed" the same loop
    flushed, to show what flushing alone is worth."""
    import contextlib

    import torch

    from engine.fast import DenormalsFlushed

    device = "cuda" if a.device == "cuda" else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    x, idx = _batch(a.batch, a.T, max(1, a.T // 25))
    x, idx = x.to(device), idx.to(device)
    runs = {}
    for v in a.variant.split(","):
        model = _train_model(v, device)
        runs[v] = (model, torch.optim.Adam(model.parameters(), lr=1e-4), [], [])
        _train_step(model, v, x, idx, runs[v][1])  # warm-up
    for _ in range(a.iters):
        for v, (model, opt, walls, cpus) in runs.items():
            sync()
            t, c = time.perf_counter(), time.process_time()
            with contextlib.nullcontext() if v == "allcells" else DenormalsFlushed():
                _train_step(model, v, x, idx, opt)
            sync()
            walls.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
    n = a.batch * a.T
    return {
        v: {
            "timesteps_per_s": n / statistics.median(walls),
            "cpu_timesteps_per_s": n / statistics.median(cpus),
            "step_s": statistics.median(walls),
        }
        for v, (_, _, walls, cpus) in runs.items()
    }


def job_trainer(a) -> dict:
    """The real trainer on bundled-corpus batches (length-bucketed, at most T points), eager
    against the graphed step (engine.graphed), for each cell in --variant; steps/s and
    real (unpadded) timesteps/s, median over --iters steps after two warm-up steps."""
    import torch

    from engine.train_cli import RUN_DEFAULTS, build

    device = torch.device("cuda" if a.device == "cuda" else "cpu")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    out = {}
    for cell in a.variant.split(","):
        for graph in (False, True):
            settings = {**RUN_DEFAULTS, "preset": "paper", "cell": cell, "optimizer": "adam",
                        "batch_size": a.batch, "max_len": a.T, "val_every": 0,
                        "steps": a.iters + 2, "cuda_graph": graph}  # fmt: skip
            trainer, _ = build(settings, device, False, None)
            walls, points = [], []
            t = time.perf_counter()
            for r in trainer.run():  # each step ends in a host sync (the gradient norm)
                sync()
                now = time.perf_counter()
                walls.append(now - t)
                points.append(r.points_per_s * walls[-1])
                t = now
            wall = statistics.median(walls[2:] or walls)
            pts = statistics.median(points[2:] or points)
            out[f"{cell}{'-graph' if graph else ''}"] = {
                "step_s": wall,
                "timesteps_per_s": pts / wall,
                "status": trainer.graph_status,
            }
    return out


def job_trainmem(a) -> dict:
    """Peak memory of one training step at batch 32, T = 700 (one process per variant)."""
    import torch

    model = _train_model(a.variant)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x, idx = _batch(a.batch, a.T, a.T // 25)
    base = _maxrss_mb()
    t = time.perf_counter()
    _train_step(model, a.variant, x, idx, opt)
    return {"maxrss_mb": _maxrss_mb(), "before_mb": base, "step_s": time.perf_counter() - t}


def _loss_data(B, T, seed):
    """Real corpus lines when the bundled corpus exists, else synthetic text-conditional ink."""
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    if CORPUS.exists():
        from engine.alphabet import Alphabet
        from engine.data.corpus import load_corpus

        corpus = load_corpus(CORPUS).train()
        alphabet = Alphabet()
        keep = [i for i, o in enumerate(corpus.offsets) if len(o) >= T]
        pick = rng.choice(keep, size=B, replace=len(keep) < B)
        x = np.stack([corpus.offsets[i][:T] for i in pick])
        x = corpus.norm.normalise(x.reshape(-1, 3)).reshape(B, T, 3)
        U = max(1, T // 25)
        idx = [alphabet.encode(corpus.texts[i][:U].ljust(U)) for i in pick]
        return torch.as_tensor(x), torch.as_tensor(np.array(idx)), "corpus"
    # synthetic: each character draws its own fixed little stroke pattern, plus noise
    U = max(1, T // 25)
    templates = np.random.default_rng(123).normal(0, 1, (95, 25, 2))
    idx = rng.integers(0, 95, (B, U))
    xy = templates[idx].reshape(B, U * 25, 2)[:, :T] + rng.normal(0, 0.3, (B, T, 2))
    eos = np.zeros((B, T, 1))
    eos[:, 24::25] = 1.0
    x = np.concatenate([xy, eos], -1).astype(np.float32)
    return torch.as_tensor(x), torch.as_tensor(idx), "synthetic"


def job_nll(a) -> dict:
    """Teacher-forced validation NLL (nats per point) of --model through FastStepper: fp32
    weights, int8 with the torch step, int8 with the native step; the same spread-out
    validation lines of the bundled corpus for each (at most --T points per line, --iters
    lines). The int8 paths' cost in likelihood, measured on real ink."""
    import numpy as np
    import torch

    from engine import native
    from engine.data.corpus import load_corpus, spread
    from engine.fast import FastStepper
    from engine.mixture import point_nll, split_params
    from engine.resources import default_corpus_path

    model, alphabet, norm = _model(a.model)
    corpus = load_corpus(default_corpus_path())
    lines = spread(np.flatnonzero(np.asarray(corpus.split) == 1), a.iters)
    paths = {"fp32": ("fp32", False), "int8 torch": ("int8", False)}
    if native.library()[0] is not None:
        paths["int8 native"] = ("int8", True)
    steppers = {k: FastStepper(model, weight_dtype=w, native=n) for k, (w, n) in paths.items()}
    total = dict.fromkeys(steppers, 0.0)
    points = 0
    with torch.inference_mode():
        for i in lines:
            off = torch.as_tensor(norm.normalise(corpus.offsets[i][: a.T]), dtype=torch.float32)
            idx = torch.as_tensor(alphabet.encode(corpus.texts[i]))[None]
            onehot = model.encode_text(idx) if model.synthesis else None
            inputs = torch.cat([torch.zeros(1, 3), off[:-1]])  # x_1 = 0, then the line
            for k, s in steppers.items():
                s.reset(1, onehot)
                for x, target in zip(inputs, off):
                    y, _ = s.step(x[None])
                    total[k] += point_nll(split_params(y), target[None]).sum().item()
            points += len(off)
    out = {k: v / points for k, v in total.items()}
    out |= {
        "points": points,
        "lines": len(lines),
        "kernels": {k: _kernel(s) for k, s in steppers.items()},
    }
    return out


def job_loss(a) -> dict:
    """Train paper-faithful and fast variants briefly on the same data and seed."""
    import torch

    out = {}
    valid_x, valid_idx, source = _loss_data(a.batch, a.T, seed=999)
    for variant in ("peephole", "lstm"):
        model = _train_model(variant)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        t = time.perf_counter()
        for step in range(a.iters):
            x, idx, source = _loss_data(a.batch, a.T, seed=step)
            train_loss = _train_step(model, variant, x, idx, opt)
        model.eval()
        with torch.no_grad():
            from engine.mixture import sequence_nll, split_params

            inp = torch.cat([torch.zeros_like(valid_x[:, :1]), valid_x[:, :-1]], 1)
            onehot = torch.nn.functional.one_hot(valid_idx, 95).float()
            onehot = torch.cat([onehot, torch.zeros_like(onehot[:, :1])], 1)
            y, _ = model(inp, onehot=onehot)
            valid = sequence_nll(split_params(y), valid_x).per_point.item()
        out[variant] = {"train": train_loss, "valid": valid, "s": time.perf_counter() - t}
    out["source"] = source
    return out


def job_denormals(a) -> dict:
    """The same work with and without engine.fast.DenormalsFlushed (off: denormal floats are
    computed in full, as IEEE and a peer's code do), arms interleaved in one process:
    - bundled: the bundled model writing three lines (whole sampling steps, engine defaults);
    - paper: a random 3 x 400 model writing a 40-character line to its stop (the window ends
      far past the text, where phi's tails are denormal), whole steps;
    - trainer: the real trainer's paper-size steps on bundled-corpus batches (--batch, --T):
      the time of --iters steps after two warm-up steps, the same batches in both arms."""
    import contextlib
    import itertools

    import torch

    import engine.fast
    import engine.trainer
    from engine.sampler import generate
    from engine.train_cli import RUN_DEFAULTS, build

    flushed = engine.fast.DenormalsFlushed

    def arm(on: bool):  # generate() imports the name per call, the trainer at import
        engine.fast.DenormalsFlushed = engine.trainer.DenormalsFlushed = (
            flushed if on else contextlib.nullcontext
        )

    lines = [(TEXT40, 0), ("Handwriting Studio writes this line", 1), ("Madison, MN 53703", 2)]
    sampling = {"paper": _model("paper")}
    if BUNDLED.exists():
        sampling["bundled"] = _model("bundled")
    out: dict = {}
    for name, (model, alphabet, norm) in sampling.items():
        todo = lines if name == "bundled" else [(TEXT40, 0)]
        walls = {True: [], False: []}
        for rep in range(a.iters + 1):
            for on in (True, False):
                arm(on)
                n, t = 0, time.perf_counter()
                for text, seed in todo:
                    kw = dict(alphabet=alphabet, norm=norm, seed=seed, bias=0.5)
                    for _ in itertools.islice(generate(model, text, **kw), 1500):
                        n += 1
                if rep:  # the first round warms caches and weight preparation
                    walls[on].append((time.perf_counter() - t) / n * 1e3)
        out[f"sample_{name}"] = {
            "steps": n,
            "flushed_ms": statistics.median(walls[True]),
            "unflushed_ms": statistics.median(walls[False]),
        }
    arm(True)
    runs = {}
    for on in (True, False):
        settings = {**RUN_DEFAULTS, "preset": "paper", "optimizer": "adam", "val_every": 0,
                    "batch_size": a.batch, "max_len": a.T, "steps": a.iters + 2}  # fmt: skip
        runs[on] = (build(settings, torch.device("cpu"), False, None)[0], [])
    gens = {on: runs[on][0].run() for on in runs}
    for _ in range(a.iters + 2):
        for on in (True, False):
            arm(on)
            t = time.perf_counter()
            next(gens[on])
            runs[on][1].append(time.perf_counter() - t)
    arm(True)
    # both arms draw the same batches (same seed), whose lengths differ a lot: compare the sums
    out["trainer"] = {
        "batch": a.batch,
        "T": a.T,
        "steps": a.iters,
        "flushed_s": sum(runs[True][1][2:]),
        "unflushed_s": sum(runs[False][1][2:]),
    }
    return out


def job_gpu(a) -> dict:
    """CUDA paths: the graph-captured fast step and fast-variant training (when a GPU exists)."""
    import torch

    if not torch.cuda.is_available():
        return {"gpu": None}
    model, alphabet, _ = _model("paper", "cuda")
    from engine.fast import FastStepper

    s = FastStepper(model)
    idx = torch.as_tensor(alphabet.encode(TEXT40))[None].to("cuda")
    s.reset(1, model.encode_text(idx))
    x = torch.zeros(1, 3)

    def run(n):
        for _ in range(n):
            s.step(x)[0].cpu()

    run(20)
    step = _timed(run, 500)
    a.variant, a.device = "lstm", "cuda"
    train = job_train(a)["lstm"]
    return {"gpu": torch.cuda.get_device_name(), "step": step, "train": train}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.speed")
    p.add_argument(
        "job",
        choices=[
            "sample",
            "latency",
            "train",
            "trainer",
            "trainmem",
            "loss",
            "nll",
            "denormals",
            "gpu",
        ],
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--path", default="fast")
    p.add_argument("--model", default="paper")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--variant", default="lstm")
    p.add_argument("--T", type=int, default=100)
    p.add_argument("--iters", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--weights", default="auto", help="latency: generate(weights=...)")
    p.add_argument("--int8-all", action="store_true", help="sample: int8 for every matrix")
    p.add_argument(
        "--kernel",
        choices=["auto", "torch", "avx2"],
        default="auto",
        help="torch: keep the torch step even where the native int8 step runs (engine.native); "
        "avx2: the native step's AVX2 code even where AVX-512 VNNI runs",
    )
    a = p.parse_args(argv)
    if a.kernel != "auto":
        os.environ["HANDWRITING_NATIVE"] = "0" if a.kernel == "torch" else a.kernel
    _pin(a.threads)
    result = globals()[f"job_{a.job}"](a)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
