"""--time-budget (#22): the first epoch is timed, the rest planned to end within the budget, the schedule
stretched to end with the last planned step, the decision recorded. No assertion depends on this machine's speed:
a budget of an hour always reaches the --epochs cap, a budget of a second always stops after the timed epoch."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import make_av_folder

from kit.config import parse_duration
from kit.cli import cli
from kit.errors import KitError

FAST = ["--batch-size", "8", "--image-size", "16", "--augment", "none"]


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("5m", 300), ("1.5h", 5400), ("90", 90), (" 2m ", 120)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0", "5x", "-1m", "m", "1h30m", ""])
def test_bad_durations_are_refused(text):
    with pytest.raises(KitError, match="--time-budget"):
        parse_duration(text)


def test_a_generous_budget_trains_to_the_cap_and_the_schedule_reaches_its_end(tmp_path):
    data = make_av_folder(tmp_path / "c", n_per_class=10)
    result = invoke("run", data, "--runs-dir", tmp_path / "runs", "--name", "b", "--time-budget", "1h",
                    "--epochs", "3", *FAST)
    assert result.exit_code == 0, result.output
    assert "Time budget: 3 epoch(s) in all" in result.output
    run = tmp_path / "runs" / "b"
    config = json.loads((run / "config.json").read_text())
    assert (config["time_budget"], config["epochs"]) == (3600.0, 3)
    assert config["model"] == "baseline" and run.name == "b"  # --model auto: an hour fits many baseline epochs
    history = pd.read_csv(run / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3]
    # warm-up for the timed epoch, then cosine decay to its floor (alpha = 1%) exactly at the last step
    assert history["learning_rate"].iloc[0] == pytest.approx(config["learning_rate"])
    assert history["learning_rate"].iloc[-1] == pytest.approx(0.01 * config["learning_rate"], rel=1e-3)
    assert (run / "submission.csv").is_file()


def test_a_budget_already_spent_stops_after_the_timed_epoch(tmp_path):
    data = make_av_folder(tmp_path / "c", n_per_class=10)
    result = invoke("run", data, "--runs-dir", tmp_path / "runs", "--name", "b", "--time-budget", "1s", *FAST)
    assert result.exit_code == 0, result.output
    assert "Time budget: 1 epoch(s) in all" in result.output
    config = json.loads((tmp_path / "runs" / "b" / "config.json").read_text())
    assert config["epochs"] == 1 and len(pd.read_csv(tmp_path / "runs" / "b" / "history.csv")) == 1
    assert config["model"] == "small"  # --model auto: no baseline epoch fits, so the lighter model trains
    assert "Training small on" in result.output
    assert (tmp_path / "runs" / "b" / "submission.csv").is_file()


def test_a_model_the_user_chose_is_kept_whatever_the_budget(tmp_path):
    data = make_av_folder(tmp_path / "c", n_per_class=10)
    result = invoke("train", data, "--runs-dir", tmp_path / "runs", "--time-budget", "1s", "--model", "baseline",
                    *FAST)
    assert result.exit_code == 0, result.output
    [run] = (tmp_path / "runs").iterdir()
    assert run.name.endswith("-baseline") and json.loads((run / "config.json").read_text())["model"] == "baseline"


def test_without_a_budget_auto_is_the_baseline_and_names_the_run_after_it(tmp_path):
    data = make_av_folder(tmp_path / "c", n_per_class=4)
    result = invoke("train", data, "--runs-dir", tmp_path / "runs", "--epochs", "1", *FAST)
    assert result.exit_code == 0, result.output
    [run] = (tmp_path / "runs").iterdir()
    assert run.name.endswith("-baseline") and json.loads((run / "config.json").read_text())["model"] == "baseline"


@pytest.mark.parametrize("flags,message", [
    (["--time-budget", "5x"], "Invalid value for '--time-budget'"),
    (["--time-budget", "1m", "--model", "mobilenet_v2", "--head", "flatten"], "--time-budget with a backbone"),
    (["--time-budget", "1m", "--strategy", "multiworker"], "--time-budget: for training on this machine"),
])
def test_budgets_kit_cannot_keep_are_refused_before_any_work(tmp_path, flags, message):
    data = make_av_folder(tmp_path / "c", n_per_class=4)
    result = invoke("train", data, "--runs-dir", tmp_path / "runs", "--name", "x", *flags)
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "runs" / "x").exists()


@pytest.mark.parametrize("budget,fine_tuned", [("1h", 2), ("1s", 0)])
def test_a_backbone_fine_tunes_for_what_the_budget_leaves(tmp_path, budget, fine_tuned):
    from conftest import make_class_folders

    data = make_class_folders(tmp_path / "c", n_per_class=6)
    result = invoke("run", data, "--model", "mobilenet_v3_small", "--weights", "none", "--image-size", "32",
                    "--fine-tune-epochs", "2", "--batch-size", "8", "--runs-dir", tmp_path / "runs", "--name", "t",
                    "--time-budget", budget)
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "t"
    assert json.loads((run / "config.json").read_text())["fine_tune_epochs"] == fine_tuned
    assert len(pd.read_csv(run / "history.csv")) == 1 + fine_tuned  # the frozen head, then the fine-tuning
    if fine_tuned:
        assert "Time budget: 2 fine-tuning epoch(s) in all" in result.output
        learning_rates = pd.read_csv(run / "history.csv")["learning_rate"]  # the fine-tuning's cosine, to its end
        assert learning_rates.iloc[-1] == pytest.approx(0.01 * learning_rates.iloc[1], rel=1e-3)
    else:
        assert "Time budget: no fine-tuning" in result.output and "Fine-tuning the top" not in result.output
    assert (run / "submission.csv").is_file()


def test_each_fold_plans_its_epochs_in_its_share_of_the_budget(tmp_path):
    data = make_av_folder(tmp_path / "c", n_per_class=10)
    result = invoke("run", data, "--runs-dir", tmp_path / "runs", "--name", "k", "--folds", "2", "--time-budget",
                    "1h", "--epochs", "2", *FAST)
    assert result.exit_code == 0, result.output
    assert result.output.count("Time budget: 2 epoch(s) in all") == 2  # each fold: the cap fits
    run = tmp_path / "runs" / "k"
    for fold in ("fold0", "fold1"):
        assert json.loads((run / fold / "config.json").read_text())["epochs"] == 2
        assert len(pd.read_csv(run / fold / "history.csv")) == 2
    assert json.loads((run / "config.json").read_text())["model"] == "baseline"
    assert (run / "oof.csv").is_file() and (run / "submission.csv").is_file()


def test_a_fold_gets_an_equal_share_of_what_is_left_and_the_last_keeps_the_reserve(monkeypatch):
    import kit.budget
    from kit.budget import Budget

    monkeypatch.setattr(kit.budget.time, "time", lambda: 1000.0)
    budget = Budget(deadline=1300.0, predict_images=100, after_seconds=6.0)  # 100 test images, 3 folds
    first, last = budget.for_fold(0, 3, 40), budget.for_fold(2, 3, 40)
    assert first.deadline == pytest.approx(1100.0) and last.deadline == pytest.approx(1300.0)
    assert (first.predict_images, first.after_seconds) == (40 + 100, 2.0)  # a third of the 3 × 100 test predictions
    assert (last.predict_images, last.after_seconds) == (40 + 300, 6.0)  # after the last fold: all of them
    assert budget.reserve(0.01) == pytest.approx(1.2 * 0.01 * 100 + 6.0)  # predictions with a 20% margin, the rest


def test_the_schedule_stretches_to_any_length():
    from kit.budget import stretch_schedule
    from kit.models import make_optimizer

    optimizer = make_optimizer("adamw", 0.01, total_steps=1000, warmup_steps=10)
    stretch_schedule(optimizer, 50)
    schedule = optimizer._learning_rate
    values = [float(schedule(step)) for step in (10, 30, 50)]
    assert values[0] == pytest.approx(0.01) and values[2] == pytest.approx(1e-4) and values[0] > values[1] > values[2]
    constant = make_optimizer("adam", 0.01, total_steps=1000)
    stretch_schedule(constant, 50)  # nothing to stretch
    assert np.isclose(float(constant.learning_rate), 0.01)


@pytest.mark.parametrize("size,channels", [(8, 1), (28, 1), (32, 3), (96, 3)])
def test_every_model_from_scratch_takes_any_image_size_or_says_it_is_too_small(size, channels):
    from kit.models import MODELS, build_model

    images = np.zeros((2, size, size, channels), np.uint8)
    for name in MODELS:
        if size < 28 and name == "lenet":  # the tutorial's unpadded 5×5 convolutions and pools
            with pytest.raises(KitError, match=f"--model {name}: {size}-px images are too small"):
                build_model(name, size, channels, 5)
            continue
        probabilities = np.asarray(build_model(name, size, channels, 5)(images))
        assert probabilities.shape == (2, 5), name
        np.testing.assert_allclose(probabilities.sum(1), 1, rtol=1e-5)


class _Model:
    stop_training = False


def _guarded_epochs(seconds_per_epoch: list[float], end: int, training_deadline: float):
    """Run a DeadlineGuard over epochs of the given lengths on a fake clock starting at 100: (epochs run, log)."""
    from kit.budget import DeadlineGuard
    from kit.callbacks import Progress

    now, said, progress, model = [100.0], [], Progress(), _Model()
    guard = DeadlineGuard(training_deadline, end, progress, said.append, clock=lambda: now[0])
    guard.set_model(model)
    guard.on_train_begin()
    for epoch, seconds in enumerate(seconds_per_epoch[:end]):
        now[0] += seconds
        guard.on_epoch_end(epoch)
        if model.stop_training:
            assert progress.stopped
            return epoch + 1, said
    return len(seconds_per_epoch[:end]), said


def test_the_deadline_guard_stops_only_epochs_that_slowed_past_the_plan():
    # as planned (6 epochs of 10 s before 160), or up to half an epoch late: every planned epoch runs, silently
    assert _guarded_epochs([10] * 6, end=6, training_deadline=160) == (6, [])
    assert _guarded_epochs([10] * 6, end=6, training_deadline=156) == (6, [])
    # epochs slowed to 15 s after the plan: the 6th would end at 180, so it stops after the 5th, and says why
    epochs, said = _guarded_epochs([10, 10, 15, 15, 15, 15], end=6, training_deadline=160)
    assert epochs == 5 and said == ["Time budget: stopping after epoch 5 of 6: the epochs slowed to 15.0 s, and the "
                                    "next would end past the time planned for training"]


@pytest.mark.parametrize("seconds, model, augment", [(1e7, "baseline", "light"), (0, "small", "none")])
def test_what_fits_in_the_budget_decides_the_model_and_the_augmentation(seconds, model, augment):
    """--model auto and --augment auto with a budget: a budget of months fits more baseline epochs than the cap
    (long: augmented), one already spent fits none (the lighter model, plain); explicit choices are kept."""
    import time
    from collections import Counter

    from kit.budget import Budget
    from kit.config import Config
    from kit.training import resolve_config
    from kit.validation import ValidationReport

    report = ValidationReport([], {"a": 10, "b": 10}, 4, Counter({(16, 16): 24}), Counter({"L": 24}))
    budget = Budget(time.time() + seconds, predict_images=4)
    config = resolve_config(Config(data="c", epochs=40, batch_size=8), report, budget, sizes=(16, 4))
    assert (config.model, config.augment, config.image_size, config.channels) == (model, augment, 28, 1)
    kept = resolve_config(Config(data="c", epochs=40, model="lenet", augment="strong"), report, budget, (16, 4))
    assert (kept.model, kept.augment) == ("lenet", "strong")
    assert resolve_config(Config(data="c", epochs=40), report).augment == "light"  # no budget: --epochs decides
