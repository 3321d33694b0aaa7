"""Every command through Click's CliRunner on tiny generated folders."""

import json

import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import (
    folder_hash,
    make_av_folder,
    make_class_folders,
    make_digits_folder,
    make_image,
)

from kit.cli import cli

FAST = ["--epochs", "3", "--batch-size", "8", "--image-size", "16", "--augment", "none"]


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One `kit run` on an AV folder, shared by the tests that only read its run folder."""
    tmp = tmp_path_factory.mktemp("run")
    data = make_av_folder(tmp / "comp", n_per_class=12)
    before = folder_hash(data)
    result = invoke("run", data, "--runs-dir", tmp / "runs", "--name", "r1", "--learning-rate", "0.01", *FAST)
    return tmp, data, before, result


def test_help_is_fast_and_lists_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("validate", "train", "run", "make-submission", "predict", "report"):
        assert command in result.output


def test_validate_clean_and_with_errors(tmp_path):
    data = make_av_folder(tmp_path / "c")
    result = invoke("validate", data)
    assert result.exit_code == 0
    assert "train: 24 images in 3 classes; test: 6 images" in result.output
    assert "0 error(s), 0 warning(s)" in result.output
    (data / "train" / "00001.png").unlink()
    result = invoke("validate", data)
    assert result.exit_code == 2
    assert "error: train.csv:3: image '00001' not found in train/" in result.output


def test_run_writes_everything_and_leaves_data_untouched(trained):
    tmp, data, before, result = trained
    assert result.exit_code == 0, result.output
    run = tmp / "runs" / "r1"
    for name in ("config.json", "class_names.json", "model.keras", "history.csv", "metrics.json", "manifest.json",
                 "val_predictions.csv", "classification_report.txt", "classification_report.json",
                 "confusion_matrix.csv", "confusion_matrix.png", "curves.png", "submission.csv"):
        assert (run / name).is_file(), name
    assert json.loads((run / "class_names.json").read_text()) == ["cat", "dog", "emu"]
    config = json.loads((run / "config.json").read_text())
    assert config["image_size"] == 16 and config["channels"] == 1
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["num_train"] + metrics["num_validation"] == 36
    assert metrics["val_accuracy"] > 0.6  # three easy patterns: well above chance (0.33)
    history = pd.read_csv(run / "history.csv")
    assert len(history) == 3 and (history["seconds"] > 0).all()  # wall time per epoch, for time-to-accuracy
    sub = pd.read_csv(run / "submission.csv", dtype=str, keep_default_na=False)
    sample = pd.read_csv(data / "sample_submission.csv", dtype=str, keep_default_na=False)
    assert list(sub.columns) == list(sample.columns)
    assert sub["id"].tolist() == sample["id"].tolist()  # leading zeros kept, sample order kept
    assert set(sub["label"]) <= {"cat", "dog", "emu"}
    assert folder_hash(data) == before


def test_existing_run_is_refused_without_force(trained):
    tmp, data, _, _ = trained
    result = invoke("train", data, "--runs-dir", tmp / "runs", "--name", "r1", *FAST)
    assert result.exit_code == 2
    assert result.output.strip().endswith("run already exists; pick another --name or pass --force to replace it")


def test_make_submission_never_overwrites_without_force(trained):
    tmp, data, _, _ = trained
    out = tmp / "sub.csv"
    assert invoke("make-submission", tmp / "runs" / "r1", data, "-o", out).exit_code == 0
    first = out.read_bytes()
    result = invoke("make-submission", tmp / "runs" / "r1", data, "-o", out)
    assert result.exit_code == 2 and "already exists; pass --force" in result.output
    assert invoke("make-submission", tmp / "runs" / "r1", "-o", out, "--force").exit_code == 0
    assert out.read_bytes() == first  # same model, same images: same file


def test_predict_names_a_broken_image_in_one_line(trained):
    tmp, data, _, _ = trained
    jpeg = (tmp / "whole.jpg")
    make_image("cat", 0, size=16).convert("RGB").save(jpeg)
    (tmp / "broken.jpg").write_bytes(jpeg.read_bytes()[:200])  # a plain JPEG header, then nothing
    (tmp / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    for name in ("broken.jpg", "broken.png"):
        result = invoke("predict", tmp / "runs" / "r1", tmp / name)
        assert result.exit_code == 2 and result.output.startswith(f"Error: {tmp / name}: not a readable image")
        assert len(result.output.strip().splitlines()) == 1


def test_an_image_that_breaks_inside_tf_data_keeps_its_one_line_error(tmp_path):
    from kit.errors import image_error_in
    from kit.pipeline import make_dataset

    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(Exception) as raised:  # TensorFlow's own error type, wrapping kit's
        list(make_dataset([tmp_path / "broken.png"], image_size=8, channels=1, batch_size=1))
    error = image_error_in(raised.value)
    assert str(error).startswith(f"{tmp_path / 'broken.png'}: not a readable image") and "\n" not in str(error)
    assert image_error_in(ValueError("something else")) is None


def test_predict_and_report(trained):
    tmp, data, _, _ = trained
    result = invoke("predict", tmp / "runs" / "r1", data / "test" / "00036.png", "--top", "2")
    assert result.exit_code == 0
    line = result.output.strip()
    assert line.startswith(str(data / "test" / "00036.png") + ": ") and line.count(" 0.") + line.count(" 1.0") == 2
    (tmp / "runs" / "r1" / "curves.png").unlink()
    result = invoke("report", tmp / "runs" / "r1")  # printed; the run folder only read
    assert result.exit_code == 0 and "precision" in result.output and "Report: " in result.output
    assert not (tmp / "runs" / "r1" / "curves.png").exists()
    result = invoke("report", tmp / "runs" / "r1", "--rewrite")
    assert result.exit_code == 0 and "precision" in result.output
    assert (tmp / "runs" / "r1" / "curves.png").is_file()


def test_tampered_model_is_refused(trained, tmp_path):
    tmp, data, _, _ = trained
    import shutil

    copy = tmp_path / "r1"
    shutil.copytree(tmp / "runs" / "r1", copy)
    with open(copy / "model.keras", "ab") as f:
        f.write(b"x")
    result = invoke("make-submission", copy, data, "-o", tmp_path / "s.csv")
    assert result.exit_code == 2 and "does not match the run's manifest" in result.output
    import hashlib

    digest = hashlib.sha256((copy / "model.keras").read_bytes()).hexdigest()
    assert f"--trust-model {digest}" in result.output
    trusted = invoke("make-submission", copy, data, "-o", tmp_path / "s.csv", "--trust-model", digest)
    assert trusted.exit_code == 0, trusted.output  # the user vouched for exactly this file
    assert (tmp_path / "s.csv").is_file()


def test_a_run_model_with_a_lambda_layer_is_refused(trained, tmp_path):
    import json
    import shutil

    import keras

    tmp, data, _, _ = trained
    copy = tmp_path / "r1"
    shutil.copytree(tmp / "runs" / "r1", copy)
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Lambda(lambda t: t / 255.0)(inputs)
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(x))).save(
        copy / "model.keras")
    from kit.runs import write_manifest

    write_manifest(copy)  # even a manifest that vouches for it does not let a Lambda layer load
    assert json.loads((copy / "manifest.json").read_text())["model.keras"]
    result = invoke("predict", copy, str(next((data / "test").iterdir())))
    assert result.exit_code == 2
    assert "cannot load in Keras safe mode" in result.output and "Lambda" in result.output


def test_train_refuses_bad_data_before_training(tmp_path):
    data = make_av_folder(tmp_path / "c")
    (data / "train" / "00004.png").write_bytes(b"")
    result = invoke("train", data, "--runs-dir", tmp_path / "runs", *FAST)
    assert result.exit_code == 2
    assert "Error: train.csv:6: image 'train/00004.png' not a readable image" in result.output
    assert not (tmp_path / "runs").exists()


def test_digits_layout_end_to_end(tmp_path):
    data = make_digits_folder(tmp_path / "c")
    result = invoke("run", data, "--runs-dir", tmp_path / "runs", "--name", "d", *FAST)
    assert result.exit_code == 0, result.output
    sub = pd.read_csv(tmp_path / "runs" / "d" / "submission.csv", dtype=str)
    assert list(sub.columns) == ["filename", "label"]
    assert sub["filename"].tolist() == pd.read_csv(data / "Sample_Submission_lxuyBuB.csv", dtype=str)["filename"].tolist()


def test_class_folders_end_to_end_with_config_file(tmp_path):
    make_class_folders(tmp_path / "c")
    config = tmp_path / "kit.toml"
    config.write_text('data = "c"\nepochs = 2\nbatch_size = 8\nimage_size = 16\nmodel = "lenet"\n')
    result = invoke("run", "--config", config, "--runs-dir", tmp_path / "runs", "--name", "f", "--epochs", "1")
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "runs" / "f" / "config.json").read_text())
    assert saved["epochs"] == 1 and saved["model"] == "lenet" and saved["channels"] == 3  # flag beats file
    assert saved["augment"] == "none"  # what --augment auto meant for this model is recorded
    sub = pd.read_csv(tmp_path / "runs" / "f" / "submission.csv", dtype=str)
    assert list(sub.columns) == ["id", "label"] and sorted(sub["id"]) == [f"t{j}.jpg" for j in range(6)]


@pytest.mark.parametrize("augment, transfer, epochs, resolved", [
    ("auto", False, 10, "none"), ("auto", False, 29, "none"),  # from scratch, few epochs learn faster plain
    ("auto", False, 30, "light"), ("auto", False, 500, "light"),  # long runs overfit without it
    ("auto", True, 1, "light"),  # backbones keep augmentation (fine-tuning, feature views)
    ("strong", False, 1, "strong"), ("none", True, 100, "none"), ("none", False, 100, "none"),  # explicit: kept
])
def test_augment_auto_resolves_by_model_kind_and_epochs(augment, transfer, epochs, resolved):
    from kit.config import resolve_augment

    assert resolve_augment(augment, transfer, epochs) == resolved


def test_unknown_model_and_bad_option_are_one_line_errors(tmp_path):
    data = make_av_folder(tmp_path / "c")
    result = invoke("train", data, "--model", "nope", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2 and result.output.startswith("Error: --model nope: unknown")
    result = invoke("train", data, "--validation-split", "1.5")
    assert result.exit_code == 2 and "Error: --validation-split 1.5" in result.output


def test_runs_table_lists_runs_best_first(tmp_path):
    data = make_av_folder(tmp_path / "c", n_per_class=10)
    runs = tmp_path / "runs"
    for model in ("mlp", "lenet", "baseline"):
        result = invoke("train", data, "--model", model, "--runs-dir", runs, "--name", model, *FAST)
        assert result.exit_code == 0, result.output
    invoke("make-submission", runs / "lenet", data)
    (runs / "not-a-run").mkdir()
    rows = invoke("runs", runs, "--csv").output.strip().splitlines()
    assert rows[0] == "name,date,model,image_size,epochs,metric,score,val_accuracy,seconds,submission"
    table = [r.split(",") for r in rows[1:]]
    assert sorted(r[0] for r in table) == ["baseline", "lenet", "mlp"]
    scores = [float(r[6]) for r in table]
    assert scores == sorted(scores, reverse=True) and {r[5] for r in table} == {"accuracy"}
    for r in table:
        metrics = json.loads((runs / r[0] / "metrics.json").read_text())
        assert float(r[6]) == pytest.approx(metrics["val_score"]) == pytest.approx(float(r[7]))
        assert float(r[7]) == pytest.approx(metrics["val_accuracy"]) and r[2] == r[0] and r[3] == "16" and r[4] == "3"
        assert r[9] == ("yes" if r[0] == "lenet" else "no")
    text = invoke("runs", runs).output.splitlines()
    assert text[0].split() == ["name", "date", "model", "image_size", "epochs", "metric", "score", "val_accuracy",
                               "seconds", "submission"] and len(text) == 4


def test_a_split_too_small_to_stratify_still_keeps_every_class_in_training(tmp_path):
    data = make_av_folder(tmp_path / "c", n_per_class=3)
    result = invoke("train", data, "--runs-dir", tmp_path / "runs", "--name", "r", *FAST)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "runs" / "r" / "metrics.json").read_text())
    assert (metrics["num_train"], metrics["num_validation"]) == (7, 2)  # 20% of 9, rounded up


def test_tensorboard_logs(tmp_path):
    data = make_av_folder(tmp_path / "c")
    result = invoke("train", data, "--tensorboard", "--runs-dir", tmp_path / "runs", "--name", "tb", *FAST)
    assert result.exit_code == 0, result.output
    events = list((tmp_path / "runs" / "tb" / "tensorboard").rglob("events.out.tfevents.*"))
    assert {p.parent.name for p in events} == {"train", "validation"}


def test_run_json_lock_and_reproduce(tmp_path):
    data = make_av_folder(tmp_path / "c", n_per_class=10)
    runs = tmp_path / "runs"
    result = invoke("train", data, "--deterministic", "--runs-dir", runs, "--name", "d", *FAST)
    assert result.exit_code == 0, result.output
    info = json.loads((runs / "d" / "run.json").read_text())
    assert info["kit"] and info["packages"]["tensorflow"] and info["config"]["deterministic"] is True
    assert len(info["data_fingerprint"]) == 32 and info["ended"] >= info["started"]
    assert not (runs / "d" / ".lock").exists()  # released when training ends
    result = invoke("reproduce", runs / "d")
    assert result.exit_code == 0, result.output
    assert json.loads((runs / "d-reproduced" / "run.json").read_text())["data_fingerprint"] == info["data_fingerprint"]
    import keras
    import numpy as np

    a = keras.models.load_model(runs / "d" / "model.keras").get_weights()
    b = keras.models.load_model(runs / "d-reproduced" / "model.keras").get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))  # deterministic on CPU: bit for bit
    line = result.output.strip().splitlines()[-1]
    m = json.loads((runs / "d" / "metrics.json").read_text())["val_accuracy"]
    assert line == f"Validation accuracy: original {m:.4f}, reproduced {m:.4f}"


def test_a_run_being_trained_is_never_replaced(tmp_path):
    import subprocess
    import sys

    data = make_av_folder(tmp_path / "c")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "runs" / "busy").mkdir(parents=True)
        (tmp_path / "runs" / "busy" / "run.json").write_text('{"written_by": "kit"}')
        (tmp_path / "runs" / "busy" / ".lock").write_text(str(holder.pid))
        result = invoke("train", data, "--runs-dir", tmp_path / "runs", "--name", "busy", "--force", *FAST)
        assert result.exit_code == 2
        last = result.output.strip().splitlines()[-1]  # after the progress line that says what will be submitted
        assert last == (f"Error: {tmp_path / 'runs' / 'busy'}: process {holder.pid} is training into this run; "
                        "wait for it or stop it first")
        assert (tmp_path / "runs" / "busy" / "run.json").read_text() == '{"written_by": "kit"}'
    finally:
        holder.kill()
        holder.wait()
    result = invoke("train", data, "--runs-dir", tmp_path / "runs", "--name", "busy", "--force", *FAST)
    assert result.exit_code == 0  # a stale lock (dead process) does not block


def test_decoded_images_go_to_disk_beyond_the_memory_budget(tmp_path):
    data = make_av_folder(tmp_path / "c")
    cache = tmp_path / "cache"
    result = invoke("train", data, "--runs-dir", tmp_path / "runs", "--name", "d", *FAST, "--cache-memory-gb", "0",
                    "--cache-dir", cache)
    assert result.exit_code == 0, result.output
    assert f"on disk in {cache}" in result.output
    assert sorted(p.name.split("-")[1] for p in cache.glob("*.u8")) == ["train", "val"]


def test_a_run_no_better_than_the_most_common_class_says_so(capsys):
    from types import SimpleNamespace

    import pandas as pd

    from kit.cli import _print_train_result
    from kit.fit import _majority_rate

    val = pd.DataFrame({"label": ["PNEUMONIA"] * 10 + ["NORMAL"] * 4})
    assert _majority_rate(val, SimpleNamespace(multi_label=False)) == pytest.approx(10 / 14)
    assert _majority_rate(val, SimpleNamespace(multi_label=True)) is None  # tags: no single answer to compare with
    metrics = {"metric": "accuracy", "val_loss": 0.6, "epochs_run": 1, "train_seconds": 3, "num_validation": 14,
               "majority_rate": 10 / 14}
    scratch, backbone = SimpleNamespace(model="baseline"), SimpleNamespace(model="backbone_file")
    for accuracy, warned in ((10 / 14, True), (0.5, True), (13 / 14, False)):
        _print_train_result(SimpleNamespace(metrics={**metrics, "val_accuracy": accuracy}, run_dir="r",
                                            interrupted=False, config=scratch))
        err = capsys.readouterr().err
        assert ("no better than always answering the most common class (0.7143)" in err) == warned
        assert ("a pretrained backbone" in err) == warned
    # a backbone run is not told to use one; an AUC run is judged by its AUC (a rare positive class: accuracy at
    # 0.5 can sit on the majority's rate while the ranking is perfect — the red team's melanoma run)
    for metric, score, warned in (("accuracy", 0.5, True), ("auc", 1.0, False), ("auc", 0.52, True)):
        _print_train_result(SimpleNamespace(metrics={**metrics, "metric": metric, "val_score": score,
                                                     "val_accuracy": 10 / 14}, run_dir="r", interrupted=False,
                                            config=backbone))
        err = capsys.readouterr().err
        assert ("Warning: validation" in err) == warned and "pretrained backbone" not in err
        assert ("AUC 0.5200 is at chance" in err) == (metric == "auc" and warned)
