"""Legibility benchmark: can an independent offline recogniser read what the model writes?

Recogniser: PP-OCRv6-small text recognition (the ONNX weights shipped inside the
rapidocr==3.10.0 wheel), run directly with onnxruntime: recognition only, no detection, fed
one tightly cropped line image, greedy CTC decoding, printable ASCII only.

Protocol: render ink black on white, crop to the ink with a ~5% margin (wide margins triple
the error), resize to 48 px height. Score the case-insensitive character error rate (CER) of
held-out texts (not training labels) written by the model at each bias, and of real
validation ink through the same renderer as the baseline.

    pip install --no-deps rapidocr==3.10.0 && pip install onnxruntime pillow
    python3 -m bench.legibility --model resources/models/synthesis/model.safetensors \
        --bias 1.0 0.15 --real 100 --save-png runs/legibility
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from engine import EngineError
from engine.sample_cli import resolve_model_path

# 60 held-out texts: none is a UNIPEN training label (checked against the corpus at run time)
TEXTS = [
    "a purple kite in the sky", "dancing on the pier", "handwriting by machine",
    "recurrent networks", "a soft window of text", "mixture density output",
    "pen lifts and strokes", "seven silver spoons", "please call me later",
    "meet me at the station", "green tea with honey", "the river runs north",
    "a small red boat", "winter is coming soon", "open the back door",
    "my friend from school", "bright stars tonight", "heavy rain in march",
    "she sells sea shells", "the cat sat quietly", "buy milk and bread",
    "a letter to my aunt", "twelve yellow roses", "the old stone bridge",
    "wait for the signal", "clocks strike noon", "under the apple tree",
    "fresh paint on walls", "notes from the lecture", "bring your umbrella",
    "the garden gate", "slow and steady", "warm summer nights",
    "coffee at nine", "paper and ink", "thank you so much",
    "happy birthday dear", "see you on monday", "the blue notebook",
    "learning to write", "dinner with friends", "a quiet morning",
    "the mountain path", "lost and found", "birds in the hedge",
    "keep it simple", "turn left at the mill", "a long walk home",
    "seventy two hours", "the missing key", "write it down now",
    "rivers and lakes", "kind regards", "the window seat",
    "a cup of cocoa", "maps of old towns", "gentle breeze",
    "orange and lemon", "bread and butter", "good night moon",
]  # fmt: skip

REC_MODEL = "models/PP-OCRv6_rec_small.onnx"
HEIGHT = 48


class Recogniser:
    """PP-OCRv6-small line recogniser: image (H, W) uint8 grey -> text."""

    def __init__(self):
        try:
            import onnxruntime as ort
            import rapidocr
        except ImportError as exc:
            raise SystemExit(
                "the legibility bench needs: pip install --no-deps rapidocr==3.10.0 && "
                f"pip install onnxruntime pillow ({exc})"
            ) from None
        path = Path(rapidocr.__file__).parent / REC_MODEL
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        chars = self.session.get_modelmeta().custom_metadata_map["character"].splitlines()
        self.classes = ["<blank>"] + chars + [" "]  # CTC blank first, space last (PaddleOCR)

    def __call__(self, grey: np.ndarray) -> str:
        h, w = grey.shape
        width = max(8, int(round(w * HEIGHT / h)))
        img = Image.fromarray(grey).convert("RGB").resize((width, HEIGHT), Image.BILINEAR)
        x = np.asarray(img, np.float32).transpose(2, 0, 1)[None] / 255.0
        x = (x - 0.5) / 0.5
        probs = self.session.run(None, {self.session.get_inputs()[0].name: x})[0][0]
        best = probs.argmax(-1)
        out, prev = [], 0
        for k in best:  # greedy CTC: collapse repeats, drop blanks
            if k != prev and k != 0:
                ch = self.classes[k] if k < len(self.classes) else ""
                if len(ch) == 1 and 32 <= ord(ch) < 127:
                    out.append(ch)
            prev = k
        return "".join(out).strip()


def render_line(
    strokes: list[np.ndarray], margin: float = 0.05, px_height: int = 96, smooth: bool = False
) -> np.ndarray:
    """Black ink on white, cropped tightly to the ink with `margin`; (H, W) uint8. `smooth`
    draws the spline through the points, as the studio and the exports do (engine.render);
    off by default so figures stay comparable with those measured before it existed."""
    from engine.strokes import smooth_strokes

    strokes = [np.asarray(s, np.float64) for s in strokes if len(s)]
    if smooth:
        strokes = smooth_strokes(strokes)
    if not strokes:
        return np.full((px_height, px_height), 255, np.uint8)
    pts = np.concatenate(strokes)
    lo, hi = pts.min(0), pts.max(0)
    span = max(hi[1] - lo[1], 1e-6)
    scale = px_height / span
    pad = margin * px_height
    W = int((hi[0] - lo[0]) * scale + 2 * pad) + 1
    H = int(px_height + 2 * pad) + 1
    img = Image.new("L", (max(W, 8), H), 255)
    draw = ImageDraw.Draw(img)
    width = max(2, int(round(px_height * 0.035)))
    for s in strokes:
        xy = [(float((p[0] - lo[0]) * scale + pad), float((p[1] - lo[1]) * scale + pad)) for p in s]
        if len(xy) == 1:
            x, y = xy[0]
            draw.ellipse([x - width / 2, y - width / 2, x + width / 2, y + width / 2], fill=0)
        else:
            draw.line(xy, fill=0, width=width, joint="curve")
    return np.asarray(img)


def levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def cer(refs: list[str], hyps: list[str]) -> float:
    """Character error rate over a set, case-insensitive: sum of edits / sum of lengths."""
    edits = sum(levenshtein(r.lower(), h.lower()) for r, h in zip(refs, hyps))
    return edits / max(1, sum(len(r) for r in refs))


def sample_texts(loaded, texts, bias: float, seed: int = 0, steps_per_char: int = 40, primer=None):
    """Write every text at once as one batch (rows padded; each row stops by the Sec. 5.3 rule
    on its own length or after steps_per_char * (len + 1) steps). Same drawing as
    engine.sampler, batched across different texts, which the bench needs for speed.
    With an `engine.sampler.Primer`, every row first reads the primer's ink and text
    teacher-forced (Sec. 5.5) and then writes its own text; only the new ink is returned.
    Returns a list of stroke lists."""
    import torch

    from engine.data.preprocess import respace
    from engine.sampler import _draw, _params_to_numpy, primed_text
    from engine.strokes import offsets_to_strokes

    model, alphabet, norm = loaded.model, loaded.alphabet, loaded.norm
    plain = texts
    if primer is not None:
        texts = [primed_text(primer.text, t) for t in texts]
    codes = [alphabet.encode(t) for t in texts]
    skip = len(texts[0]) - len(plain[0])  # primer characters: no step budget for them
    B, U = len(texts), max(len(c) for c in codes)
    idx = torch.zeros(B, U, dtype=torch.long)
    for i, c in enumerate(codes):
        idx[i, : len(c)] = torch.from_numpy(c)
    lens = np.array([len(c) for c in codes])
    onehot = model.encode_text(idx, torch.from_numpy(lens))
    positions = torch.arange(1, U + 2, dtype=onehot.dtype)
    valid = np.arange(U + 1)[None] < lens[:, None]  # (B, U+1) real characters
    rng = np.random.default_rng(seed)
    state, x = model.initial_state(B), torch.zeros(B, 3)
    done, out = np.zeros(B, bool), [[] for _ in range(B)]
    with torch.inference_mode():
        if primer is not None:  # x_1 = 0, then the primer's points, all teacher-forced
            p = np.asarray(primer.offsets, np.float32).reshape(-1, 3)
            p = norm.normalise(respace(p, model.config.point_step))  # as engine.sampler does
            xs = np.concatenate([np.zeros((1, 3), np.float32), p[:-1]])
            xs_t = torch.as_tensor(xs)[None].expand(B, -1, -1).contiguous()
            for x_t in xs_t.unbind(1):
                _, state, _ = model.step(x_t, state, onehot, positions)
            x = torch.as_tensor(np.repeat(p[-1:], B, 0))
        for t in range(steps_per_char * (U + 1)):
            y_hat, state, phi = model.step(x, state, onehot, positions)
            offset = _draw(_params_to_numpy(y_hat, bias, norm), rng)
            for b in np.flatnonzero(~done):
                out[b].append(offset[b])
            phi = phi.numpy()
            past_end = phi[np.arange(B), lens] > np.where(valid, phi, -np.inf).max(axis=1)
            done |= past_end | (t + 1 >= steps_per_char * (lens - skip + 1))
            if done.all():
                break
            x_next = offset.copy()
            x_next[:, :2] = (offset[:, :2] - norm.mean) / np.asarray(norm.std)
            x = torch.as_tensor(x_next, dtype=torch.float32)
    return [offsets_to_strokes(np.array(o, np.float32).reshape(-1, 3)) for o in out]


def sample_engine(loaded, texts, bias: float, seed: int = 0, tries: int = 1, primer=None):
    """Write every text the way the studio and `handwriting-engine sample` write a page line
    (engine.layout.write_lines, best of `tries`); text i gets seed seed * 1000 + i. Returns a
    list of stroke lists (primer ink excluded)."""
    from engine.layout import write_lines
    from engine.strokes import offsets_to_strokes

    out = []
    for i, text in enumerate(texts):
        kw = dict(seed=seed * 1000 + i, tries=tries, bias=bias, primer=primer)
        steps = [e.step for e in write_lines(loaded, [text], **kw)]  # a one-line page
        offs = [s.offset[0] for s in steps if not s.primed and not s.done[0]]
        out.append(offsets_to_strokes(np.array(offs, np.float32).reshape(-1, 3)))
    return out


def score_model(
    model_path,
    biases,
    texts,
    seed=0,
    save_png=None,
    rec=None,
    sheet=None,
    primer=None,
    smooth=False,
    tries=None,
) -> dict:
    """CER per bias. tries None: the batched sampler above (all texts in one batch, fast);
    tries N: the engine's own page path, best of N per line (sample_engine)."""
    from engine.checkpoint import load_model

    loaded = load_model(model_path)
    rec = rec or Recogniser()
    results, rows = {}, []
    for bias in biases:
        t0 = time.perf_counter()
        if tries is None:
            strokes = sample_texts(loaded, texts, bias, seed, primer=primer)
        else:
            strokes = sample_engine(loaded, texts, bias, seed, tries, primer)
        hyps = []
        for i, (text, st) in enumerate(zip(texts, strokes)):
            img = render_line(st, smooth=smooth)
            hyps.append(rec(img))
            if i < 6:
                rows.append((st, f"bias {bias:g}: {text!r} -> OCR {hyps[-1]!r}"))
            if save_png is not None and i < 8:
                Path(save_png).mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(Path(save_png) / f"bias{bias:g}-{i:02d}.png")
        results[f"bias={bias:g}"] = {
            "cer": cer(texts, hyps),
            "seconds": round(time.perf_counter() - t0, 1),
            "examples": [[r, h] for r, h in list(zip(texts, hyps))[:10]],
        }
    if sheet is not None:
        from engine.data.render import render_sheet

        render_sheet(rows, sheet)
    return results


def score_real(corpus_path, n, rec=None, save_png=None, smooth=False) -> dict:
    from engine.data.corpus import load_corpus, spread
    from engine.strokes import offsets_to_strokes

    corpus = load_corpus(corpus_path)
    rec = rec or Recogniser()
    idx = spread(np.flatnonzero(np.asarray(corpus.split) == 1), n)  # not just the first writers
    refs = [corpus.texts[i] for i in idx]
    hyps = []
    for k, i in enumerate(idx):
        img = render_line(offsets_to_strokes(corpus.offsets[i]), smooth=smooth)
        hyps.append(rec(img))
        if save_png is not None and k < 4:
            Path(save_png).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(Path(save_png) / f"real-{k:02d}.png")
    return {"cer": cer(refs, hyps), "lines": len(idx), "examples": list(zip(refs, hyps))[:10]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--model", help="synthesis model file or folder (default: the bundled synthesis model)"
    )
    ap.add_argument(
        "--real-only", action="store_true", help="score only the real-ink baseline, no model"
    )
    ap.add_argument("--corpus", help="corpus .npz for the real-ink baseline (default bundled)")
    ap.add_argument("--bias", type=float, nargs="+", default=[1.0, 0.15])
    ap.add_argument("--texts", type=int, default=len(TEXTS), help="how many held-out texts")
    ap.add_argument("--real", type=int, default=100, help="validation lines for the baseline")
    ap.add_argument("--save-png", help="folder for a few rendered lines")
    ap.add_argument("--sheet", help="PNG contact sheet of a few samples per bias")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--primer", help="prime every line with this ink (style .json or .inkml with its text)"
    )
    ap.add_argument(
        "--smooth", action="store_true", help="draw the spline through the points (as the studio)"
    )
    ap.add_argument(
        "--tries",
        type=int,
        help="write each text through the engine's page path, best of N per line "
        "(engine.layout.best_line; 1 = one plain sample); default: the batched sampler",
    )
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    try:
        return run(args)
    except EngineError as e:
        print(f"legibility: error: {e}", file=sys.stderr)
        return 2


def run(args) -> int:
    from engine.resources import default_corpus_path

    corpus = args.corpus or default_corpus_path()
    texts = TEXTS[: args.texts]
    if Path(corpus).is_file():
        from engine.data.corpus import load_corpus

        labels = {t.strip().lower() for t in load_corpus(corpus).texts}
        overlap = [t for t in texts if t.lower() in labels]
        if overlap:
            print(
                f"warning: {len(overlap)} bench texts are corpus labels: {overlap}", file=sys.stderr
            )
    if args.tries is not None:
        from engine.layout import check_tries

        check_tries(args.tries)
    if args.real_only and not args.real:
        raise EngineError("--real-only with --real 0 scores nothing")
    model_path = None
    if not args.real_only:
        model_path = resolve_model_path(Path(args.model) if args.model else None)
        if not model_path.is_file():  # before the recogniser (an optional extra) is loaded
            raise EngineError(f"no model file at {model_path}")
    primer = None
    if args.primer:
        from engine.sample_cli import load_primer

        primer = load_primer(Path(args.primer), None)
    rec = Recogniser()
    out: dict = {}
    if args.real and Path(corpus).is_file():
        out["real_ink"] = score_real(corpus, args.real, rec, args.save_png, args.smooth)
        real = out["real_ink"]
        print(f"real validation ink: CER {real['cer']:.3f} ({real['lines']} lines)")
    if not args.real_only:
        out["model"] = score_model(
            model_path,
            args.bias,
            texts,
            args.seed,
            args.save_png,
            rec,
            args.sheet,
            primer,
            args.smooth,
            args.tries,
        )
        if args.tries is not None:
            out["tries"] = args.tries
        if primer is not None:
            out["primer"] = {"path": str(args.primer), "text": primer.text}
        for k, v in out["model"].items():
            print(f"model {k}: CER {v['cer']:.3f} over {len(texts)} texts ({v['seconds']} s)")
    out["smooth"] = args.smooth
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
