"""Nothing lost, nothing escapes (#18): ownership of outputs and run folders, confinement to the data folder,
damaged data named before training, every table shape, run folders as input, numbers, the operating system,
scale, and a property test of the whole CLI."""

import json
import os
import shutil
import zlib

import numpy as np
import pytest
from conftest import (
    folder_hash,
    invoke,
    one_error,
    make_av_folder,
    make_class_folders,
    make_image,
    write_csv,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image


FAST = ["--epochs", "1", "--batch-size", "8", "--image-size", "16", "--augment", "none"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished run (with its submission) on a tiny AV folder, for the tests that only read it."""
    tmp = tmp_path_factory.mktemp("safety")
    data = make_av_folder(tmp / "comp", n_per_class=10)
    result = invoke("run", data, "--runs-dir", tmp / "runs", "--name", "r", "--learning-rate", "0.01", *FAST)
    assert result.exit_code == 0, result.output
    return tmp, data, tmp / "runs" / "r"


# ------------------------------------------------------------------------------------------ ownership


def test_outputs_never_land_in_the_data_folder(trained):
    tmp, data, run = trained
    before = folder_hash(data)
    one_error(invoke("validate", data, "--json", data / "train.csv"), "--json", "inside the data folder")
    one_error(invoke("make-submission", run, data, "-o", data / "train.csv", "--force"), "inside the data folder")
    one_error(invoke("make-submission", run, "-o", data / "new.csv"), "inside the data folder")
    one_error(invoke("export", run, "-o", data / "export", "--force"), "inside the data folder")
    one_error(invoke("run", data, "--runs-dir", tmp / "runs", "--name", "x", "--output", data / "s.csv", *FAST),
              "inside the data folder")
    assert not (tmp / "runs" / "x").exists()  # refused before training
    assert folder_hash(data) == before


def test_force_replaces_only_what_kit_wrote(trained, tmp_path):
    tmp, data, run = trained
    report = tmp_path / "report.json"
    assert invoke("validate", data, "--json", report).exit_code == 0
    one_error(invoke("validate", data, "--json", report), "already exists; pass --force")
    assert invoke("validate", data, "--json", report, "--force").exit_code == 0  # kit's own: replaced
    report.write_text("{}  ")  # the user edits it: theirs now
    one_error(invoke("validate", data, "--json", report, "--force"), "kit did not write it")
    assert report.read_text() == "{}  "
    mine = tmp_path / "mine.csv"
    mine.write_text("id,label\n1,2\n")
    one_error(invoke("make-submission", run, "-o", mine, "--force"), "kit did not write it")
    assert mine.read_text() == "id,label\n1,2\n"
    assert invoke("make-submission", run, "--force").exit_code == 0  # RUN/submission.csv is the run's own


def test_outputs_refuse_folders_fifos_and_links(trained, tmp_path):
    tmp, data, run = trained
    (tmp_path / "folder.csv").mkdir()
    one_error(invoke("make-submission", run, "-o", tmp_path / "folder.csv", "--force"), "folder.csv")
    os.mkfifo(tmp_path / "fifo.json")
    one_error(invoke("validate", data, "--json", tmp_path / "fifo.json", "--force"), "is a FIFO")
    (tmp_path / "target.csv").write_text("keep")
    os.symlink(tmp_path / "target.csv", tmp_path / "link.csv")
    one_error(invoke("make-submission", run, "-o", tmp_path / "link.csv", "--force"), "is a symbolic link")
    assert (tmp_path / "target.csv").read_text() == "keep"


def test_run_names_are_names_and_force_replaces_only_kit_runs(trained, tmp_path):
    tmp, data, run = trained
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "config.json").write_text("{}")
    runs = tmp_path / "runs"
    runs.mkdir()
    for name in ("../app", "/tmp/x", "a/b", "..", ".hidden"):
        one_error(invoke("train", data, "--runs-dir", runs, "--name", name, "--force", *FAST), "--name")
    one_error(invoke("train", data, "--runs-dir", tmp_path, "--name", "app", "--force", *FAST),
              "not a kit run folder")
    assert (tmp_path / "app" / "config.json").read_text() == "{}"


def test_export_and_dataset_export_never_delete_user_files(trained, tmp_path):
    tmp, data, run = trained
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    one_error(invoke("export", run, "-o", mine, "--force"), "kit did not write it")
    one_error(invoke("datasets", "export", "digits", mine, "--limit", "20", "--force"), "kit did not write it")
    assert (mine / "notes.txt").read_text() == "mine"
    out = tmp_path / "exported"
    assert invoke("datasets", "export", "digits", out, "--limit", "20").exit_code == 0
    one_error(invoke("datasets", "export", "digits", out, "--limit", "20"), "already exists")
    assert invoke("datasets", "export", "digits", out, "--limit", "30", "--force").exit_code == 0  # kit's: replaced
    assert len(list((out / "train").iterdir())) == 30
    one_error(invoke("datasets", "export", "digits", tmp_path / "e2", "--answers", tmp_path / "e2" / "a.csv"),
              "inside the data folder")


def test_new_with_force_keeps_the_users_files(tmp_path):
    out = tmp_path / "proj"
    out.mkdir()
    (out / "README.md").write_text("my notes")
    result = invoke("new", out, "--force")
    assert result.exit_code == 0 and "Kept your own file(s), not replaced: README.md" in result.output
    assert (out / "README.md").read_text() == "my notes" and (out / "kit.toml").is_file()
    toml = (out / "kit.toml").read_text()
    assert invoke("new", out, "--force").exit_code == 0  # kit's own kit.toml is rewritten, the README kept
    assert (out / "kit.toml").read_text() == toml and (out / "README.md").read_text() == "my notes"


# --------------------------------------------------------------------------------------- confinement


def test_links_out_of_the_data_folder_are_named_once_unless_followed(tmp_path):
    outside = make_class_folders(tmp_path / "elsewhere")
    data = tmp_path / "comp"
    (data / "train").mkdir(parents=True)
    for c in ("cat", "dog"):
        shutil.copytree(outside / "train" / c, data / "train" / c)
    os.symlink(outside / "train" / "emu", data / "train" / "emu")
    line = one_error(invoke("validate", data), "train/emu", "symbolic link", "--follow-symlinks")
    assert line.count("emu") == 2  # the link and where it leads, once
    result = invoke("validate", data, "--follow-symlinks")
    assert result.exit_code == 0 and "in 3 classes" in result.output

    av = make_av_folder(tmp_path / "av")
    shutil.move(av / "test", tmp_path / "test-images")
    os.symlink(tmp_path / "test-images", av / "pics")
    one_error(invoke("validate", av, "--test-images", "pics"), "pics", "symbolic link")
    assert invoke("validate", av, "--test-images", "pics", "--follow-symlinks").exit_code == 0


# ------------------------------------------------------------------------------------- damaged images


def _flip_crc(path):
    data = bytearray(path.read_bytes())
    at = data.find(b"IDAT")
    length = int.from_bytes(data[at - 4:at], "big")
    data[at + 4 + length] ^= 0xFF  # the chunk's CRC, so zlib still inflates the pixels
    path.write_bytes(bytes(data))


def test_a_png_training_would_refuse_is_an_error_before_training(tmp_path):
    data = make_av_folder(tmp_path / "c")
    _flip_crc(data / "train" / "00005.png")
    one_error(invoke("run", data, "--runs-dir", tmp_path / "runs", *FAST),
              "train.csv:7", "00005.png", "CRC error in its IDAT chunk")
    assert not (tmp_path / "runs").exists()


def test_validation_agrees_with_tensorflows_decoder_on_damaged_files(tmp_path):
    """For every file TensorFlow decodes in training, validation fails exactly when TensorFlow does."""
    import tensorflow as tf

    from kit.errors import ImageError
    from kit.headers import plain_image
    from kit.images import check_image

    rng = np.random.default_rng(0)
    variants = {}
    for kind in ("png", "jpg"):
        base = tmp_path / f"base.{kind}"
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(base, quality=90)
        raw = base.read_bytes()
        variants[f"whole.{kind}"] = raw
        variants[f"cut.{kind}"] = raw[: len(raw) * 2 // 3]
        for k, at in enumerate((len(raw) // 3, len(raw) // 2, len(raw) - 20)):
            bad = bytearray(raw)
            bad[at] ^= 0x5A
            variants[f"flip{k}.{kind}"] = bytes(bad)
    png = bytearray(variants["whole.png"])
    at = png.find(b"IDAT")
    png[at + 4 + int.from_bytes(png[at - 4:at], "big")] ^= 1
    variants["crc.png"] = bytes(png)
    checked = 0
    for name, raw in variants.items():
        path = tmp_path / name
        path.write_bytes(raw)
        if plain_image(str(path), 3) is None:
            continue  # Pillow's own file: validation decodes it with the decoder training uses, Pillow
        checked += 1
        try:
            tf.io.decode_image(tf.io.read_file(str(path)), channels=3)
            tf_ok = True
        except tf.errors.OpError:
            tf_ok = False
        try:
            check_image(str(path))
            kit_ok = True
        except ImageError:
            kit_ok = False
        assert kit_ok == tf_ok, name
    assert checked >= 8


def test_an_image_that_disappears_after_validation_is_named(tmp_path):
    import tensorflow as tf

    from kit.errors import ImageError
    from kit.validation import images_named_on_failure

    paths = []
    for k in range(3):
        make_image("cat", k).save(tmp_path / f"{k}.png")
        paths.append(str(tmp_path / f"{k}.png"))
    (tmp_path / "1.png").unlink()
    with pytest.raises(ImageError) as raised:
        with images_named_on_failure(paths):
            for p in paths:
                tf.io.read_file(p)
    assert str(raised.value).startswith(f"{tmp_path / '1.png'}: file not found") and "\n" not in str(raised.value)


# ------------------------------------------------------------------------------------------- tables


@pytest.mark.parametrize("make_table,parts", [
    (lambda d: (d / "train.csv").write_text("id,label\n00000,cat\n00001\n"), ("train.csv:3", "1 field(s)")),
    (lambda d: (d / "train.csv").write_text("id,label\n00000,cat,x\n"), ("train.csv:2", "3 field(s)")),
    (lambda d: (d / "train.csv").write_text("id,label,label\n00000,cat,cat\n"), ("train.csv:1", "'label' appears 2")),
    (lambda d: (d / "train.csv").write_bytes(zlib.compress(b"id,label\n")[:2] + b"x"), ()),
    (lambda d: (d / "train.csv").write_bytes(b"\x1f\x8b\x08\x00" + b"\0" * 20), ("gzip",)),
    (lambda d: (d / "train.csv").write_bytes(b"PK\x03\x04" + b"\0" * 20), ("xlsx",)),
    (lambda d: (d / "train.csv").write_bytes("id\tlabel\n".encode("utf-16-le")), ("NUL bytes",)),
    (lambda d: write_csv(d / "train.csv", ["id"] + [f"pixel{i}" for i in range(784)], [["0"] * 785]),
     ("a table of pixel columns with no label column", "columns: id, pixel…")),
    (lambda d: write_csv(d / "train.csv", ["id", "name", "kind"] + [f"c{i}" for i in range(10)], [["0"] * 13]),
     ("cannot tell which column is the label", "c2, … (13 columns)")),
])
def test_every_table_shape_gets_one_line(tmp_path, make_table, parts):
    data = make_av_folder(tmp_path / "c")
    make_table(data)
    result = invoke("validate", data)
    line = one_error(result, *parts)
    assert len(line) < 400


def test_utf16_with_bom_invisible_and_formula_labels(tmp_path):
    data = make_av_folder(tmp_path / "c")
    rows = [(f"{k:05d}", ("cat", "dog", "emu")[k // 8]) for k in range(24)]
    rows[3], rows[4] = ("00003", "cat\u200b"), ("00004", "cat\u200b")
    rows[9], rows[10] = ("00009", "=dog"), ("00010", "=dog")
    text = "id,label\n" + "".join(f"{i},{c}\n" for i, c in rows)
    (data / "train.csv").write_bytes(text.encode("utf-16"))  # with its BOM
    result = invoke("validate", data)
    assert result.exit_code == 0, result.output
    assert "labels 'cat', 'cat\\u200b' differ only in case, number format or invisible characters" in result.output
    assert "1 label(s) start with =, +, - or @ (first '=dog')" in result.output


# --------------------------------------------------------------------------------- run folders as input


def test_run_folder_json_is_checked_like_flags(trained, tmp_path):
    tmp, data, run = trained
    copy = tmp_path / "r"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("submission.csv"))
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "from_a_newer_kit": 1}))
    result = invoke("make-submission", copy, data)
    assert result.exit_code == 0 and "ignoring setting(s) this kit does not know: from_a_newer_kit" in result.output
    (copy / "config.json").write_text(json.dumps({**config, "image_size": "16"}))
    one_error(invoke("make-submission", copy, data, "--force"), "config.json: key 'image_size'", "whole number")
    (copy / "config.json").write_text(json.dumps({**config, "image_size": 24}))
    one_error(invoke("make-submission", copy, data, "--force"), "do not match the model's input")
    (copy / "config.json").write_text(json.dumps(config))
    (copy / "class_names.json").write_text(json.dumps(["cat", "dog"]))
    one_error(invoke("make-submission", copy, data, "--force"), "class_names.json: changed after kit wrote it")
    (copy / "class_names.json").write_text(json.dumps("cat"))
    one_error(invoke("report", copy), "class_names.json: expected a list")
    (copy / "class_names.json").write_text(json.dumps(["cat", "dog", "emu"]))
    (copy / "metrics.json").write_text("[1]")
    one_error(invoke("report", copy), "metrics.json: expected a JSON object")


def test_a_run_being_trained_or_killed_at_its_start_is_called_that(trained, tmp_path):
    tmp, data, run = trained
    busy = tmp_path / "busy"
    shutil.copytree(run, busy)
    (busy / ".lock").write_text(str(os.getppid()))  # a live process that is not this one
    one_error(invoke("make-submission", busy, data, "-o", tmp_path / "s.csv"), "still training this run")
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "run.json").write_text('{"written_by": "kit"}')
    one_error(invoke("report", killed), "stopped before it wrote it")


def test_run_folders_work_from_any_directory(trained, tmp_path, monkeypatch):
    tmp, data, run = trained
    monkeypatch.chdir(tmp_path)
    result = invoke("make-submission", run, "-o", tmp_path / "elsewhere.csv")
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())
    assert os.path.isabs(config["data"])


# ------------------------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("args,option", [
    (["--learning-rate", "nan"], "--learning-rate"), (["--learning-rate", "inf"], "--learning-rate"),
    (["--early-stopping", "-1"], "--early-stopping"), (["--cache-memory-gb", "-2"], "--cache-memory-gb"),
    (["--seed", "-3"], "--seed"), (["--validation-split", "nan"], "--validation-split"),
    (["--fine-tune-epochs", "-1"], "--fine-tune-epochs"), (["--epochs", "0"], "--epochs"),
])
def test_numbers_are_refused_naming_the_option(av_folder, tmp_path, args, option):
    one_error(invoke("train", av_folder, "--runs-dir", tmp_path / "runs", *args), option)
    assert not (tmp_path / "runs").exists()


def test_config_file_numbers_and_other_commands(trained, tmp_path):
    tmp, data, run = trained
    (tmp_path / "kit.toml").write_text("[kit]\nepochs = 1.5\n")
    one_error(invoke("train", data, "--config", tmp_path / "kit.toml"), "--epochs 1.5", "whole number")
    (tmp_path / "kit.toml").write_text("[kit]\ndeterministic = 1\n")
    one_error(invoke("train", data, "--config", tmp_path / "kit.toml"), "--deterministic", "true or false")
    assert invoke("make-submission", run, run, "--weights", "nan,1").exit_code == 2
    assert invoke("predict", run, data / "test" / "00030.png", "--top", "-1").exit_code == 2
    assert invoke("datasets", "export", "digits", tmp_path / "d", "--limit", "-5").exit_code == 2
    assert not (tmp_path / "d").exists()


def test_a_diverging_training_stops_in_one_line_and_leaves_no_submission(tmp_path):
    data = make_av_folder(tmp_path / "c")
    result = invoke("run", data, "--runs-dir", tmp_path / "runs", "--name", "nan", "--model", "lenet",
                    "--optimizer", "sgd", "--learning-rate", "1e6", *FAST, "--epochs", "5")
    one_error(result, "became NaN or infinite in epoch", "--learning-rate")
    assert not (tmp_path / "runs" / "nan" / "submission.csv").exists()
    assert not (tmp_path / "runs" / "nan" / "metrics.json").exists()


# --------------------------------------------------------------------------------- operating system


@pytest.mark.parametrize("errno,reason", [(30, "Read-only file system"), (13, "Permission denied"),
                                          (28, "No space left on device")])
def test_the_operating_system_saying_no_is_one_line(trained, tmp_path, monkeypatch, errno, reason):
    """Tests run as root here, whom permissions do not stop, so the system's refusal is made where kit writes."""
    import tempfile

    tmp, data, run = trained

    def refuse(*args, dir=None, **kwargs):
        raise OSError(errno, reason, str(dir))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    one_error(invoke("make-submission", run, "-o", tmp_path / "out" / "s.csv"), f"{tmp_path / 'out'}: {reason}")
    assert not (tmp_path / "out" / "s.csv").exists()


def test_a_fifo_given_as_an_image_is_one_line_not_a_hang(trained, tmp_path):
    tmp, data, run = trained
    os.mkfifo(tmp_path / "pipe.png")
    one_error(invoke("predict", run, tmp_path / "pipe.png"), "pipe.png", "not a regular file")


def test_no_temporary_file_is_left_when_writing_fails(tmp_path, monkeypatch):
    from kit.runs import write_json

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        write_json(tmp_path / "x.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []
    from kit.errors import os_error_line

    assert os_error_line(OSError(28, "No space left on device", "/d/x")) == "/d/x: No space left on device"


# -------------------------------------------------------------------------------------------- scale


def test_thousands_of_classes_keep_reports_small(tmp_path):
    """A whale-style run folder: 2,000 classes, val_predictions with each row's top classes only."""
    import pandas as pd

    from kit.reports import write_reports

    run = tmp_path / "run"
    run.mkdir()
    classes = [f"w_{k:04d}" for k in range(2000)]
    (run / "run.json").write_text('{"written_by": "kit"}')
    (run / "config.json").write_text(json.dumps({"image_size": 16, "channels": 1, "data": str(tmp_path)}))
    (run / "class_names.json").write_text(json.dumps(classes))
    labels = [classes[k % 60] for k in range(300)]
    pd.DataFrame({"id": range(300), "path": "", "label": labels, "predicted": labels[::-1],
                  "confidence": 0.5, "p_true": 0.1}).to_csv(run / "val_predictions.csv", index=False)
    write_reports(run)
    matrix = pd.read_csv(run / "confusion_matrix.csv", index_col=0)
    assert matrix.shape == (40, 40)
    assert (run / "report.html").stat().st_size < 2_000_000
    assert "The 100 classes with most validation images of 2000" in (run / "report.html").read_text()


def test_single_image_classes_are_one_warning_and_stay_in_training(tmp_path):
    from kit.config import Config
    from kit.data import load_competition
    from kit.training import split_train_validation
    from kit.validation import validate

    data = make_av_folder(tmp_path / "c")
    rows = [(f"{k:05d}", ("cat", "dog", "emu")[k // 8]) for k in range(24)]
    rows[3], rows[11] = ("00003", "w_1"), ("00011", "w_2")
    write_csv(data / "train.csv", ["id", "label"], rows)
    comp = load_competition(data)
    report = validate(comp)
    singles = [p for p in report.problems if p.code == "single_image_class"]
    assert not report.errors and len(singles) == 1 and "2 class(es) have a single image" in str(singles[0])
    train, val = split_train_validation(comp, Config(data=str(data)))
    assert {"w_1", "w_2"} <= set(train["label"]) and not {"w_1", "w_2"} & set(val["label"])


# ------------------------------------------------------------------------------- the whole CLI, randomly


# The same examples on every run (CI must be repeatable); KIT_FUZZ=1 draws new ones, for a hunt by hand.
DERANDOMIZE = not os.environ.get("KIT_FUZZ")
JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True),
                        st.text(max_size=8), st.lists(st.integers(0, 3), max_size=3), st.just({}))


@settings(max_examples=20, deadline=None, derandomize=DERANDOMIZE, suppress_health_check=list(HealthCheck))
@given(file=st.sampled_from(["config.json", "class_names.json", "metrics.json", "manifest.json", "run.json",
                             "thresholds.json"]),
       key=st.sampled_from(["image_size", "channels", "model", "folds", "data", "augment", "new_key", "metric",
                            "val_score", "thresholds", "unknown_threshold", None]),
       value=JSON_VALUES, command=st.sampled_from(["make-submission", "report", "runs", "predict", "export"]))
def test_random_run_folder_edits_never_escape(trained, tmp_path_factory, file, key, value, command):
    tmp, data, run = trained
    work = tmp_path_factory.mktemp("edit")
    copy = work / "r"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("submission.csv", "export"))
    original = json.loads((copy / file).read_text())
    edited = {**original, key: value} if isinstance(original, dict) and key else value
    (copy / file).write_text(json.dumps(edited))
    before_data, before_run = folder_hash(data), folder_hash(copy)
    args = {"make-submission": [copy, data, "-o", work / "s.csv"], "report": [copy], "runs": [work],
            "predict": [copy, data / "test" / "00030.png"], "export": [copy, "-o", work / "m.tflite",
                                                                       "--format", "tflite"]}[command]
    result = invoke(command, *args)
    assert result.exit_code in (0, 2), result.output
    assert folder_hash(data) == before_data
    if command in ("runs", "predict", "make-submission", "export", "report"):
        assert folder_hash(copy) == before_run  # these only read the run folder


@settings(max_examples=25, deadline=None, derandomize=DERANDOMIZE, suppress_health_check=list(HealthCheck))
@given(target=st.sampled_from(["train.csv", "test.csv", "sample_submission.csv", "train/00004.png",
                               "test/00025.png"]),
       how=st.sampled_from(["flip", "cut", "append", "empty"]), where=st.floats(0, 1), byte=st.integers(1, 255))
def test_random_damage_to_images_and_tables_never_escapes(tmp_path_factory, target, how, where, byte):
    data = make_av_folder(tmp_path_factory.mktemp("dmg") / "c")
    path = data / target
    raw = bytearray(path.read_bytes())
    at = min(len(raw) - 1, int(where * len(raw)))
    if how == "flip":
        raw[at] ^= byte
    elif how == "cut":
        raw = raw[:at]
    elif how == "append":
        raw += bytes([byte]) * 7
    else:
        raw = bytearray()
    path.write_bytes(bytes(raw))
    before = folder_hash(data)
    result = invoke("validate", data)
    assert result.exit_code in (0, 2)
    assert folder_hash(data) == before


INVALID_NUMBERS = ["nan", "inf", "-inf", "-1", "1e309", "", "x", "99999999999"]
FLOAT_OPTIONS = ["--learning-rate", "--validation-split", "--cache-memory-gb"]
INT_OPTIONS = ["--epochs", "--batch-size", "--seed", "--folds", "--image-size", "--early-stopping",
               "--checkpoint-every", "--feature-views", "--fine-tune-layers", "--channels"]


@settings(max_examples=30, deadline=None, derandomize=DERANDOMIZE, suppress_health_check=list(HealthCheck))
@given(option=st.sampled_from(FLOAT_OPTIONS + INT_OPTIONS), value=st.sampled_from(INVALID_NUMBERS + ["1.5"]))
def test_random_invalid_option_values_are_one_line_before_any_work(trained, tmp_path_factory, option, value):
    if value == "1.5" and option in FLOAT_OPTIONS and option != "--validation-split":
        return  # a valid value: it would train; the other tests cover training
    tmp, data, run = trained
    runs = tmp_path_factory.mktemp("opt")
    before = folder_hash(data)
    result = invoke("train", data, "--runs-dir", runs, "--name", "o", "--epochs", "1", "--batch-size", "8",
                    "--image-size", "8", option, value)
    assert result.exit_code == 2, result.output
    assert "Error" in result.output and option in result.output
    assert folder_hash(data) == before and not (runs / "o").exists()


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_an_image_deleted_while_training_runs(tmp_path, monkeypatch, policy):
    """Validation passed; then a training image goes: one line naming it, or (skip) training goes on without it."""
    import kit.training

    data = make_av_folder(tmp_path / "c")
    resolve = kit.training.resolve_config

    def resolve_then_delete(config, report, *args):  # runs after validation, before any decoding
        (data / "train" / "00004.png").unlink()
        return resolve(config, report, *args)

    monkeypatch.setattr(kit.training, "resolve_config", resolve_then_delete)
    result = invoke("train", data, "--runs-dir", tmp_path / "runs", "--name", "r", "--on-bad-image", policy, *FAST)
    if policy == "error":
        one_error(result, f"{data / 'train' / '00004.png'}: file not found", "changed after validation")
    else:
        assert result.exit_code == 0, result.output
        skipped = (tmp_path / "runs" / "r" / "skipped.csv").read_text()
        assert "00004.png" in skipped and "broke during training" in skipped
        metrics = json.loads((tmp_path / "runs" / "r" / "metrics.json").read_text())
        assert metrics["num_train"] + metrics["num_validation"] == 23


def test_runs_and_caches_never_go_into_the_data_folder(av_folder):
    before = folder_hash(av_folder)
    one_error(invoke("train", av_folder, "--runs-dir", av_folder / "runs", *FAST), "--runs-dir", "inside the data")
    one_error(invoke("train", av_folder, "--cache-dir", av_folder / "cache", *FAST), "--cache-dir", "inside the data")
    assert folder_hash(av_folder) == before


def test_empty_ids_and_line_breaks_inside_ids_stay_one_line(tmp_path):
    data = make_av_folder(tmp_path / "c")
    lines = (data / "train.csv").read_text().splitlines()
    lines[3] = ",cat"
    lines[4] = '"a\nb",cat'
    (data / "train.csv").write_text("\n".join(lines) + "\n")
    result = invoke("validate", data)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and errors == [
        "error: train.csv:4: empty id; every row needs the id of its image",
        "error: train.csv:5: image 'a\\nb' not found in train/ (looked for a\\nb, a\\nb.png, a\\nb.jpg, …)"]


def test_score_refuses_probabilities_that_are_not_numbers_in_range(tmp_path):
    (tmp_path / "a.csv").write_text("id,label\n1,cat\n2,dog\n")
    for values in ("nan,0.5", "1.5,0", "inf,0"):
        (tmp_path / "s.csv").write_text(f"id,cat,dog\n1,{values}\n2,0.2,0.8\n")
        one_error(invoke("score", tmp_path / "s.csv", tmp_path / "a.csv", "--metric", "log_loss"),
                  "probabilities must be finite numbers within 0..1")


def test_many_two_image_classes_split_with_every_class_in_training(tmp_path):
    import pandas as pd

    from kit.config import Config
    from kit.data import Competition
    from kit.training import split_train_validation

    labels = [f"w_{k // 2}" for k in range(400)] + ["w_0"] * 10  # 200 classes: a stratified 20% cannot hold them all
    train = pd.DataFrame({"id": [str(k) for k in range(len(labels))], "path": "", "label": labels, "row": None})
    comp = Competition(root=tmp_path, layout="csv", train=train, test=None, validation=None,
                       class_names=sorted(set(labels)))
    fit, val = split_train_validation(comp, Config(data=str(tmp_path), seed=3))
    assert len(val) == 82 and len(fit) + len(val) == len(labels)
    assert set(fit["label"]) == set(labels)  # every class keeps a training image
    assert set(val["label"]) <= set(fit["label"])
