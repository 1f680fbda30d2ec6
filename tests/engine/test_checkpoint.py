"""Model files: round trips, refusal of pickles (without running them), versions, damage."""

import json
import os
import pickle
import subprocess
import sys

import pytest
import torch

from engine.alphabet import Alphabet
from engine.checkpoint import (
    FORMAT_VERSION,
    ModelFileError,
    load_model,
    read_metadata,
    save_model,
    save_tensors,
)
from engine.models import HandwritingModel, preset
from engine.strokes import NormStats


def test_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    m = HandwritingModel(preset("small")).eval()
    norm = NormStats((0.1, 0.2), (3.0, 4.0))
    save_model(tmp_path / "m.safetensors", m, Alphabet(), norm, training={"steps": 7})
    loaded = load_model(tmp_path / "m.safetensors")
    assert loaded.kind == "synthesis" and loaded.norm == norm and loaded.alphabet == Alphabet()
    assert loaded.metadata["training"]["steps"] == 7
    x = torch.randn(1, 5, 3)
    oh = m.encode_text(torch.tensor([[1, 2, 3]]))
    assert torch.equal(m(x, onehot=oh)[0], loaded.model(x, onehot=oh)[0])


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_code_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "payload-ran"
    p = _Payload()
    p.marker = marker
    for name, data in [
        ("evil.pkl", pickle.dumps(p)),
    ]:
        (tmp_path / name).write_bytes(data)
    torch.save({"w": torch.zeros(1), "x": p}, tmp_path / "evil.pt")  # zip-based torch file
    for name in ("evil.pkl", "evil.pt"):
        with pytest.raises(ModelFileError, match="pickle"):
            load_model(tmp_path / name)
    assert not marker.exists()


def test_newer_format_version_is_refused_clearly(tmp_path):
    save_tensors(
        tmp_path / "f.safetensors",
        {"a": torch.zeros(1)},
        {"kind": "synthesis", "format_version": FORMAT_VERSION + 1},
    )
    with pytest.raises(ModelFileError, match="version"):
        read_metadata(tmp_path / "f.safetensors")


def test_foreign_and_damaged_files_are_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(ModelFileError, match="not a Handwriting Studio model"):
        load_model(tmp_path / "foreign.safetensors")
    m = HandwritingModel(preset("tiny"))
    save_model(tmp_path / "ok.safetensors", m, Alphabet())
    data = (tmp_path / "ok.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError):
        load_model(tmp_path / "cut.safetensors")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(ModelFileError):
        load_model(tmp_path / "empty.safetensors")
    with pytest.raises(ModelFileError, match="no model file"):
        load_model(tmp_path / "missing.safetensors")


def test_metadata_that_does_not_match_weights_is_refused(tmp_path):
    m = HandwritingModel(preset("tiny"))
    meta = {"kind": "synthesis", "config": json.loads(json.dumps(preset("small").to_dict()))}
    save_tensors(tmp_path / "bad.safetensors", m.state_dict(), meta)
    with pytest.raises(ModelFileError, match="does not match"):
        load_model(tmp_path / "bad.safetensors")


def test_import_engine_loads_no_qt():
    code = (
        "import sys, engine, engine.cli, engine.models, engine.sampler, engine.checkpoint, "
        "engine.render\n"
        "engine.cli.build_parser()\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'studio', "
        "'shiboken6')]\n"
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, f"engine imported Qt modules: {r.stdout} {r.stderr}"


def test_saved_files_get_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        save_model(tmp_path / "m.safetensors", HandwritingModel(preset("tiny")), Alphabet())
    finally:
        os.umask(old)
    assert (tmp_path / "m.safetensors").stat().st_mode & 0o777 == 0o644
