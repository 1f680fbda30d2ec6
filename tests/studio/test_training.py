"""In-app training: the worker reports, finishes, pauses, cancels and closes cleanly."""

import time

import pytest


def test_dataset_split(dataset):
    assert (dataset.split == 1).sum() >= 1 and (dataset.split == 0).sum() >= 1
    assert all(o.shape[1] == 3 for o in dataset.offsets)


@pytest.mark.slow
def test_training_worker_reports_and_finishes(start_training, qtbot, window, tmp_path, dataset):
    tab = window.train_tab
    progress = []
    tab.controller.progress.connect(progress.append)
    with qtbot.waitSignal(tab.controller.finished, timeout=120000) as blocker:
        start_training(tab, tmp_path / "run", dataset, steps=4)
    snap = blocker.args[0]
    assert snap.step == 4 and not snap.stopped
    assert progress and progress[-1]["step"] == 4
    assert len(snap.train_loss) == 4 and len(snap.valid_loss) == 2
    assert snap.preview and snap.preview_step == 4
    assert snap.checkpoints
    tab.refresh()
    assert tab.checkpoints.count() == len(snap.checkpoints)
    from engine.checkpoint import load_model

    loaded = load_model(snap.checkpoints[-1])
    assert loaded.kind == "synthesis" and loaded.norm is not None
    # a new network learns the default sparse spacing, normalised for it (not the corpus's)
    from engine.data.preprocess import TRAIN_STEP, respace
    from engine.strokes import NormStats

    assert loaded.config.point_step == TRAIN_STEP
    train = [respace(o, TRAIN_STEP) for o, s in zip(dataset.offsets, dataset.split) if s == 0]
    assert loaded.norm == NormStats.fit(train)
    # "use this model for writing" hands the checkpoint to the model manager
    with qtbot.waitSignal(
        window.models.changed,
        timeout=60000,
        check_params_cb=lambda: window.models.loaded is not None,
    ):
        tab.use_button.click()
    qtbot.waitUntil(lambda: window.models.loaded is not None and not window.models.loading)
    assert window.models.loaded.path == loaded.path


@pytest.mark.slow
def test_pause_resume_cancel_keeps_a_checkpoint(start_training, qtbot, window, tmp_path, dataset):
    tab = window.train_tab
    with qtbot.waitSignal(
        tab.controller.progress, timeout=120000, check_params_cb=lambda p: p["step"] >= 1
    ):
        start_training(tab, tmp_path / "run", dataset, steps=100000, preview_every=0, val_every=0)
    tab.toggle_pause()
    time.sleep(0.3)
    qtbot.wait(50)
    step = tab.latest.step
    time.sleep(0.4)
    qtbot.wait(150)
    assert tab.latest.step <= step + 1  # at most the step in flight
    tab.toggle_pause()
    with qtbot.waitSignal(tab.controller.finished, timeout=60000) as blocker:
        tab.cancel()
    snap = blocker.args[0]
    assert snap.stopped and snap.checkpoints
    assert not tab.is_training()


@pytest.mark.slow
def test_closing_mid_training_stops_thread_and_keeps_checkpoint(
    start_training, qtbot, window, tmp_path, dataset
):
    tab = window.train_tab
    with qtbot.waitSignal(
        tab.controller.progress, timeout=120000, check_params_cb=lambda p: p["step"] >= 2
    ):
        start_training(tab, tmp_path / "run", dataset, steps=100000, preview_every=0, val_every=0)
    ended = []
    tab.controller._thread.finished.connect(lambda: ended.append(True))
    window.close()
    assert not tab.is_training() and ended == [True]
    from engine.checkpoint import load_model

    ckpts = sorted((tmp_path / "run" / "checkpoints").glob("step-*[0-9].safetensors"))
    assert ckpts
    assert load_model(ckpts[-1]).kind == "synthesis"


def test_bad_data_is_a_message(qtbot, window, tmp_path):
    tab = window.train_tab
    with qtbot.waitSignal(tab.controller.failed, timeout=60000) as blocker:
        tab.start(source="unipen", path=str(tmp_path / "nope"), run_dir=tmp_path / "r")
    assert "does not exist" in blocker.args[0]
    qtbot.waitUntil(lambda: not tab.is_training())
    assert "Training failed" in tab.banner.text() and tab.start_button.isEnabled()


def test_iam_folder_is_a_training_source(tmp_path):
    from pathlib import Path

    from engine import EngineError
    from studio.training import load_dataset

    fixture = Path(__file__).resolve().parent.parent / "fixtures" / "iam"
    data = load_dataset("iam", fixture)
    assert len(data.texts) >= 2 and all(t for t in data.texts)
    with pytest.raises(EngineError, match="not an IAM-OnDB copy"):
        load_dataset("iam", tmp_path)


@pytest.mark.slow
def test_finetuning_the_model_in_use(start_training, qtbot, window, tmp_path, dataset):
    """ "Start from: the model in use" continues that model (its own network and normalisation)
    on the chosen data, whatever the Size box says."""
    from engine.checkpoint import load_model, save_model
    from studio.model_manager import make_untrained

    tab = window.train_tab
    mine = make_untrained("tiny", "synthesis")
    mine.norm = type(mine.norm)((0.5, 0.0), (2.0, 3.0))  # not the dataset's normalisation
    source = tmp_path / "mine.safetensors"
    save_model(source, mine.model, alphabet=mine.alphabet, norm=mine.norm)
    window.models.load_file(source)
    qtbot.waitUntil(
        lambda: (
            not window.models.loading
            and window.models.loaded is not None
            and window.models.loaded.path == source
        ),
        timeout=60000,
    )
    tab.start_from.setCurrentIndex(tab.start_from.findData("current"))
    assert not tab.preset.isEnabled() and not tab.kind.isEnabled()
    with qtbot.waitSignal(tab.controller.finished, timeout=120000) as blocker:
        start_training(tab, tmp_path / "run", dataset, steps=2, preset="small")
    snap = blocker.args[0]
    assert snap.step == 2 and not snap.stopped
    tuned = load_model(snap.checkpoints[-1])
    assert tuned.config == mine.model.config  # tiny, as the model in use, not "small"
    assert tuned.norm == mine.norm
    assert tuned.metadata["training"]["task"]["init_from"] == str(source)


def test_finetuning_needs_a_model_file(qtbot, window, tmp_path, dataset):
    from studio.model_manager import make_untrained

    tab = window.train_tab
    window.models.set_loaded(make_untrained("tiny", "synthesis"), "untrained")
    tab.start_from.setCurrentIndex(tab.start_from.findData("current"))
    assert not tab.start(dataset=dataset, run_dir=tmp_path / "run", steps=2)
    assert "Cannot fine-tune: the model in use has no file" in tab.banner.text()
    assert not tab.controller.is_running()
    tab.start_from.setCurrentIndex(tab.start_from.findData("new"))
    assert tab.preset.isEnabled() and tab.kind.isEnabled()


def test_finetuning_starts_gently(tmp_path, dataset):
    """A fresh Adam at 1e-3 knocked the bundled model from -3.8 to +0.8 nats/point in one step:
    fine-tuning uses a lower rate with a warm-up; a new network keeps Adam's default."""
    from engine.checkpoint import save_model
    from studio.model_manager import make_untrained
    from studio.training import FINETUNE_LR, FINETUNE_WARMUP, TrainJob

    mine = make_untrained("tiny", "synthesis")
    source = tmp_path / "mine.safetensors"
    save_model(source, mine.model, alphabet=mine.alphabet, norm=mine.norm)
    common = dict(dataset=dataset, preset="tiny", steps=2, threads=1, ckpt_every=0)
    tuned = TrainJob(run_dir=tmp_path / "a", init_from=source, **common)
    tuned._build()
    assert tuned.trainer.config.base_lr() == FINETUNE_LR == 1e-4
    assert tuned.trainer.config.warmup_steps == FINETUNE_WARMUP > 0
    fresh = TrainJob(run_dir=tmp_path / "b", **common)
    fresh._build()
    assert fresh.trainer.config.base_lr() == 1e-3 and fresh.trainer.config.warmup_steps == 0
    for job in (tuned, fresh):
        job.trainer.close()
