"""The `sample` command end to end with a small saved model, and its error messages."""

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from PIL import Image

from engine.alphabet import Alphabet
from engine.checkpoint import save_model
from engine.cli import main
from engine.layout import wrap_text
from engine.models import HandwritingModel, preset
from engine.sampler import SamplingError
from engine.strokes import NormStats


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("m") / "tiny.safetensors"
    save_model(path, HandwritingModel(preset("tiny")), Alphabet(), NormStats((0.6, 0.0), (1, 1)))
    return path


def test_json_output_has_text_and_strokes_in_screen_coordinates(model_file, tmp_path):
    out = tmp_path / "a.json"
    assert (
        main(
            [
                "sample",
                "--text",
                "ab\\ncd",
                "--model",
                str(model_file),
                "--seed",
                "3",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    data = json.loads(out.read_text())
    assert data["text"] == "ab\ncd"
    assert data["strokes"] and all(len(p) == 2 for s in data["strokes"] for p in s)
    # two lines: the second line's ink sits lower (y grows down)
    ys = [p[1] for s in data["strokes"] for p in s]
    assert max(ys) - min(ys) > 20


def test_svg_and_png_outputs(model_file, tmp_path):
    svg, png = tmp_path / "a.svg", tmp_path / "a.png"
    for out in (svg, png):
        assert (
            main(
                [
                    "sample",
                    "--text",
                    "hello",
                    "--model",
                    str(model_file),
                    "--seed",
                    "1",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
    root = ET.parse(svg).getroot()
    paths = root.findall(".//{http://www.w3.org/2000/svg}path")
    assert len(paths) >= 1
    img = np.asarray(Image.open(png).convert("L"))
    assert (img < 128).sum() > 20 and (img > 250).mean() > 0.5  # dark ink on white


def test_same_seed_same_output(model_file, tmp_path):
    outs = []
    for name in ("x.json", "y.json"):
        main(
            [
                "sample",
                "--text",
                "seed",
                "--model",
                str(model_file),
                "--seed",
                "9",
                "--out",
                str(tmp_path / name),
            ]
        )
        outs.append((tmp_path / name).read_text())
    assert outs[0] == outs[1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--text", "hi", "--out", "OUT.doc"], "cannot write"),
        (["--text", "na\u00efve", "--out", "OUT.json"], "cannot write"),
        (
            ["--text", "hi", "--model", "/nonexistent/m.safetensors", "--out", "OUT.json"],
            "no model file",
        ),
        (["--text", "", "--out", "OUT.json"], "no text"),
        (["--text", "hi", "--weights", "int4", "--out", "OUT.json"], "--weights must be one of"),
        (["--text", "hi", "--seed", "-5", "--out", "OUT.json"], "seed must be a whole number"),
        (["--text", "hi", "--threads", "0", "--out", "OUT.json"], "--threads must be at least 1"),
        (["--text", "hi", "--tries", "0", "--out", "OUT.json"], "--tries must be a whole number"),
        (["--text", "hi", "--tries", "40", "--out", "OUT.json"], "from 1 to 16"),
        (["--text", "hi", "--out", "OUT.json", "--trace", "OUT.csv"], "is a NumPy .npz file"),
        (
            ["--text", "hi", "--out", "OUT.json", "--trace", "/nonexistent/t.npz"],
            "does not exist",
        ),
    ],
)
def test_errors_are_messages_not_tracebacks(model_file, tmp_path, capsys, args, message):
    args = [a.replace("OUT", str(tmp_path / "o")) for a in args]
    if "--model" not in args:
        args += ["--model", str(model_file)]
    assert main(["sample", *args]) == 1
    assert message in capsys.readouterr().err


def test_wrap_text_bounds_and_blank_lines():
    assert wrap_text("one two three", 8) == ["one two", "three"]
    assert wrap_text("a\n\nb", 10) == ["a", "", "b"]
    with pytest.raises(SamplingError, match="at most"):
        wrap_text("x" * 10_001)
    with pytest.raises(SamplingError, match="no text"):
        wrap_text(" \n  \n")


def test_inkml_output_reimports_and_primes(model_file, tmp_path):
    from engine.data.inkml import read_inkml

    out = tmp_path / "a.inkml"
    assert (
        main(
            [
                "sample",
                "--text",
                "ink",
                "--model",
                str(model_file),
                "--seed",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    ink = read_inkml(out)
    assert ink.text == "ink" and len(ink.strokes) >= 1
    primed = tmp_path / "primed.json"
    assert (
        main(
            [
                "sample",
                "--text",
                "more",
                "--model",
                str(model_file),
                "--seed",
                "2",
                "--prime-ink",
                str(out),
                "--out",
                str(primed),
            ]
        )
        == 0
    )
    assert json.loads(primed.read_text())["strokes"]


def test_model_folder_means_its_model_file(model_file, tmp_path):
    """`--model resources/models/synthesis` or a run directory: the model.safetensors inside."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(model_file.read_bytes())
    outs = []
    for model in (folder, model_file):
        out = tmp_path / f"{len(outs)}.json"
        args = ["sample", "--text", "ab", "--model", str(model), "--seed", "3", "--out", str(out)]
        assert main(args) == 0
        outs.append(out.read_text())
    assert outs[0] == outs[1]
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["sample", "--text", "ab", "--model", str(empty), "--out", str(tmp_path / "e.json")]
    assert main(args) == 1


def test_trace_holds_each_lines_window_and_mixture_and_changes_nothing(model_file, tmp_path):
    args = ["sample", "--text", "ab cd ef", "--width", "5", "--model", str(model_file)]
    args += ["--seed", "4", "--bias", "0.5"]
    assert main([*args, "--out", str(tmp_path / "plain.json")]) == 0
    assert main([*args, "--out", str(tmp_path / "t.json"), "--trace", str(tmp_path / "t.npz")]) == 0
    page = json.loads((tmp_path / "t.json").read_text())
    assert page == json.loads((tmp_path / "plain.json").read_text())  # tracing draws nothing
    z = np.load(tmp_path / "t.npz", allow_pickle=False)  # plain arrays, no pickles
    assert int(z["lines"]) == 2 and str(z["line1_text"]) == "ef"  # wrapped at 5: "ab cd", "ef"
    assert float(z["bias"]) == 0.5 and int(z["seed"]) == 4 and str(z["kind"]) == "synthesis"
    points = 0
    for i in range(2):
        offsets, phi = z[f"line{i}_offsets"], z[f"line{i}_phi"]
        T = len(offsets)
        M = z[f"line{i}_pi"].shape[1]
        assert z[f"line{i}_mu"].shape == z[f"line{i}_sigma"].shape == (T, M, 2)
        assert str(z[f"line{i}_window_text"]) == str(z[f"line{i}_text"])  # no primer
        assert phi.shape == (T, len(str(z[f"line{i}_text"])) + 1)  # U characters + end of text
        np.testing.assert_allclose(z[f"line{i}_pi"].sum(1), 1.0, atol=1e-5)
        assert (z[f"line{i}_sigma"] > 0).all() and (np.abs(z[f"line{i}_rho"]) < 1).all()
        assert ((z[f"line{i}_e"] >= 0) & (z[f"line{i}_e"] <= 1)).all()
        points += T
    # the traced offsets are the ones drawn: one JSON point per offset, strokes split at lifts
    assert points == sum(len(s) for s in page["strokes"])


def test_trace_of_a_prediction_model_has_no_window(tmp_path):
    torch.manual_seed(0)
    model = tmp_path / "pred.safetensors"
    save_model(model, HandwritingModel(preset("tiny", kind="prediction")), None, NormStats())
    trace = tmp_path / "p.npz"
    args = ["sample", "--model", str(model), "--steps", "30", "--seed", "1"]
    assert main([*args, "--out", str(tmp_path / "p.json"), "--trace", str(trace)]) == 0
    z = np.load(trace, allow_pickle=False)
    assert str(z["kind"]) == "prediction" and "line0_phi" not in z.files
    assert len(z["line0_offsets"]) == len(z["line0_e"]) <= 30


def test_tries_picks_among_lines_so_a_prediction_model_refuses_it(tmp_path, capsys):
    torch.manual_seed(0)
    model = tmp_path / "pred.safetensors"
    save_model(model, HandwritingModel(preset("tiny", kind="prediction")), None, NormStats())
    args = ["sample", "--model", str(model), "--steps", "20", "--out", str(tmp_path / "p.json")]
    assert main([*args, "--tries", "3"]) == 1
    assert "needs a synthesis model" in capsys.readouterr().err
    assert main([*args, "--tries", "1"]) == 0  # one try is plain sampling: allowed


def test_tries_one_and_the_default_write_different_pages_each_reproducible(model_file, tmp_path):
    # the default (best of 8) picks among eight lines drawn as one batch; --tries 1 is the
    # plain batch-1 sample: another random stream, another page
    pages = {}
    for name, extra in (("one", ["--tries", "1"]), ("default", []), ("default2", [])):
        out = tmp_path / f"{name}.json"
        args = ["sample", "--text", "abc", "--model", str(model_file), "--seed", "4"]
        assert main([*args, *extra, "--out", str(out)]) == 0
        pages[name] = json.loads(out.read_text())["strokes"]
    assert pages["default"] == pages["default2"]
    assert pages["default"] != pages["one"]
