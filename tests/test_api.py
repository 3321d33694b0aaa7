"""The Python API (kit.validate/run/train/load_run/score, kit.Run), kit predict on folders, the listings, the
report's new parts, tidy run folders, and the offline Kaggle flow: a finished run copied elsewhere, read-only, its
data at another path. One tiny training serves them all."""

import json
import os
import shutil
import stat
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import folder_hash, make_av_folder, make_image, write_csv

import kit
from kit.cli import cli

TINY = dict(epochs=2, batch_size=8, image_size=16, augment="none", learning_rate=0.01)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """kit.run on an AV folder with a labelled answer key beside it."""
    tmp = tmp_path_factory.mktemp("api")
    data = make_av_folder(tmp / "comp", n_per_class=12)
    test_ids = pd.read_csv(data / "test.csv", dtype=str)["id"]
    write_csv(tmp / "answers.csv", ["id", "label"], [(i, ("cat", "dog", "emu")[j % 3]) for j, i in enumerate(test_ids)])
    before = folder_hash(data)
    run = kit.run(data, runs_dir=tmp / "runs", name="a", quiet=True, **TINY)
    return tmp, data, before, run


def test_run_returns_a_run_with_score_submission_and_summary(trained):
    tmp, data, before, run = trained
    assert folder_hash(data) == before
    assert run.path == tmp / "runs" / "a" and run.metric == "accuracy" and 0 <= run.score <= 1
    assert run.score == json.loads((run.path / "metrics.json").read_text())["val_accuracy"]
    sub = run.submission
    sample = pd.read_csv(data / "sample_submission.csv", dtype=str)
    assert list(sub.columns) == ["id", "label"] and sub["id"].tolist() == sample["id"].tolist()
    assert "kit-summary" in run._repr_html_() and "validation accuracy" in run._repr_html_()
    assert "<iframe" in run.report()._repr_html_()
    assert repr(run).startswith("<kit.Run ") and not run.interrupted
    assert not (run.path / "checkpoints").exists()  # finished: nothing to resume, so no checkpoint kept
    loaded = kit.load_run(run.path)
    assert loaded.score == run.score and loaded.submission_path == run.submission_path


def test_predict_takes_a_folder_paths_or_an_array_batch(trained):
    tmp, data, _, run = trained
    table = run.predict(data / "test")
    assert list(table.columns[:3]) == ["id", "label", "probability"] and set(table.columns[3:]) == set(run.class_names)
    assert len(table) == 6 and table["id"].iloc[0] == "00036.png"
    assert np.allclose(table[run.class_names].sum(1), 1, atol=1e-4)
    paths = sorted(str(p) for p in (data / "test").iterdir())[:2]
    assert run.predict(paths, top=2).columns.tolist() == ["id", "label", "probability", "label_2", "probability_2"]
    pixels = np.stack([np.asarray(make_image("cat", 7)), np.asarray(make_image("dog", 8))])
    batch = run.predict(pixels)
    assert batch["id"].tolist() == ["0", "1"] and set(batch["label"]) <= set(run.class_names)
    # the same pixels as files give the same probabilities: one loader
    make_image("cat", 7).save(tmp / "seven.png")
    assert np.allclose(run.predict([tmp / "seven.png"])["probability"].iloc[0], batch["probability"].iloc[0])
    with pytest.raises(kit.DataError, match="uint8"):
        run.predict(pixels.astype(np.float32))


def test_make_submission_score_and_errors_are_kit_errors(trained, tmp_path):
    tmp, data, _, run = trained
    path = run.make_submission(output=tmp_path / "s.csv")
    assert path == tmp_path / "s.csv" and run.submission_path == path
    value = kit.score(path, tmp / "answers.csv")
    assert value == kit.score(run.submission, tmp / "answers.csv", metric="accuracy")
    assert 0 <= value <= 1
    with pytest.raises(kit.OutputError, match="inside the data folder"):
        run.make_submission(output=data / "s.csv")
    with pytest.raises(kit.ConfigError, match="^epoch: unknown setting; did you mean epochs"):
        kit.train(data, epoch=1)
    with pytest.raises(kit.ConfigError, match="--image-size 3"):
        kit.train(data, image_size=3)
    with pytest.raises(kit.ConfigError, match="time-budget soon"):
        kit.train(data, time_budget="soon")
    with pytest.raises(kit.RunError):
        kit.load_run(tmp_path)


def test_validate_reports_errors_and_warnings(tmp_path):
    data = make_av_folder(tmp_path / "c")
    report = kit.validate(data, quiet=True)
    assert report.ok and report.errors == [] and "0 error(s)" in repr(report)
    (data / "train" / "00001.png").unlink()
    report = kit.validate(data, quiet=True)
    assert not report.ok and "train.csv:3: image '00001' not found" in str(report.errors[0])


def test_importing_kit_loads_no_tensorflow():
    code = "import sys, kit; kit.KitError; assert 'tensorflow' not in sys.modules and 'pandas' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------------------ command line


def test_kit_predict_a_folder_to_csv(trained, tmp_path):
    tmp, data, _, run = trained
    images = tmp_path / "images"
    (images / "nested").mkdir(parents=True)
    make_image("cat", 1).save(images / "a.png")
    make_image("dog", 2).save(images / "nested" / "b.png")
    (images / "notes.txt").write_text("not an image")
    (images / ".hidden.png").write_bytes(b"junk")
    result = invoke("predict", run.path, images, "-o", tmp_path / "p.csv", "--top", "2")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "p.csv", dtype={"id": str})
    assert table["id"].tolist() == ["a.png", "nested/b.png"]
    assert table.columns.tolist() == ["id", "label", "probability", "label_2", "probability_2"]
    assert invoke("predict", run.path, images, "-o", tmp_path / "p.csv").exit_code == 2  # exists: --force
    assert invoke("predict", run.path, images, "-o", tmp_path / "p.csv", "--force").exit_code == 0
    refused = invoke("predict", run.path, data / "test", "-o", data / "test" / "p.csv")
    assert refused.exit_code == 2 and "inside the data folder" in refused.output
    stdout = invoke("predict", run.path, images, "-o", "-")
    assert stdout.output.splitlines()[0].startswith("id,label,probability")


def test_listings_share_a_header_csv_and_json(trained):
    tmp = trained[0]
    for args, first in ((["runs", tmp / "runs"], "name"), (["models"], "name"), (["recipes"], "name"),
                        (["datasets", "list"], "name")):
        table = invoke(*args)
        assert table.exit_code == 0, table.output
        header = [line for line in table.output.splitlines() if not line.startswith("Keras cache")][0]
        assert header.split()[0] == first
        as_csv = invoke(*args, "--csv").output.splitlines()
        assert as_csv[[i for i, line in enumerate(as_csv) if line.startswith("name,")][0]].startswith("name,")
        as_json = invoke(*args, "--json").output
        rows = json.loads(as_json[as_json.index("["):])
        assert rows and all("name" in r for r in rows)
    assert json.loads(invoke("runs", tmp / "runs", "--json").output)[0]["name"] == "a"
    assert invoke("models", "--csv", "--json").exit_code == 2


def test_help_lists_commands_in_workflow_order():
    out = invoke("--help").output
    commands = out[out.index("Commands:"):]
    order = [commands.index(f"  {c} ") for c in ("new", "validate", "run", "train", "make-submission", "predict",
                                                 "report", "score", "runs")]
    assert order == sorted(order)


def test_report_shows_kept_epoch_submission_versions_warnings_and_changed_settings(trained, tmp_path):
    _, _, _, run = trained
    html = (run.path / "report.html").read_text()
    kept = json.loads((run.path / "metrics.json").read_text())["best_epoch"]
    assert f"the model of epoch {kept} is kept" in html and f"(kept {kept})" in html
    assert "<section id=submission>" in html and str(run.path / "submission.csv") in html and "6 rows" in html
    assert "Held-out test accuracy" not in html  # no answers known to kit run here
    assert "Trained with kit " in html and "TensorFlow " in html and "Keras " in html
    settings = html[html.index("<section id=config>"):]
    changed, folded = settings.split("<details>")
    assert "<td>epochs</td><td>2</td>" in changed and "<td>seed</td>" in folded and "<td>seed</td>" not in changed
    copy = tmp_path / "r"
    shutil.copytree(run.path, copy)
    (copy / "validation.json").write_text(json.dumps({"summary": "train: 36 images", "count": 3,
                                                      "warnings": ["train.csv:4: a <duplicate> image"]}))
    (copy / "submission.json").write_text(json.dumps({"path": "s.csv", "rows": 6, "held_out": {
        "metric": "accuracy", "score": 0.5, "answers": "answers.csv"}}))
    invoke("report", copy, "--rewrite")
    html = (copy / "report.html").read_text()
    assert "train.csv:4: a &lt;duplicate&gt; image" in html and "2 more" in html
    assert "Held-out test accuracy: <b>0.5000</b>" in html and "held-out test accuracy" in html


# ------------------------------------------------------------------------------------------- offline (Kaggle)


def test_a_moved_read_only_run_predicts_reports_and_exports_without_writing_to_itself(trained, tmp_path):
    tmp, data, _, run = trained
    attached = tmp_path / "input" / "my-run"  # as Kaggle attaches a dataset: elsewhere, read-only
    shutil.copytree(run.path, attached)
    competition = tmp_path / "input" / "competition"  # the data at another path than at training
    shutil.copytree(data, competition)
    for path in [attached, *attached.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    before = folder_hash(attached)
    work = tmp_path / "working"
    try:
        sub = invoke("make-submission", attached, competition, "-o", work / "submission.csv")
        assert sub.exit_code == 0, sub.output
        assert pd.read_csv(work / "submission.csv", dtype=str).equals(pd.read_csv(run.path / "submission.csv",
                                                                                   dtype=str))
        assert invoke("predict", attached, competition / "test", "-o", work / "p.csv").exit_code == 0
        report = invoke("report", attached)
        assert report.exit_code == 0 and "precision" in report.output
        assert invoke("report", attached, "-o", work / "report").exit_code == 0
        assert (work / "report" / "report.html").is_file()
        exported = invoke("export", attached, "-o", work / "savedmodel")
        assert exported.exit_code == 0, exported.output
        again = kit.load_run(attached)
        assert again.make_submission(competition, output=work / "api.csv") == work / "api.csv"
        assert len(again.predict(competition / "test")) == 6
        assert folder_hash(attached) == before
    finally:
        for path in [attached, *attached.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_offline_doc_shows_the_wheelhouse_commands():
    text = (os.path.dirname(__file__) + "/../docs/offline.md")
    doc = open(text, encoding="utf-8").read()
    for needed in ("pip wheel", "pip install --no-index --find-links", "kit make-submission", "-o submission.csv"):
        assert needed in doc
