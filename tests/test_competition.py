"""Competition power: k-fold with out-of-fold predictions, ensembles, test-time augmentation."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import make_av_folder, write_csv

from kit.cli import cli
from kit.folds import fold_assignments

FAST = ["--epochs", "2", "--batch-size", "8", "--image-size", "16", "--augment", "none"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_fold_assignment_is_stratified_reproducible_and_grouped():
    labels = np.array(["a"] * 30 + ["b"] * 15)
    folds = fold_assignments(labels, 5, seed=1)
    for k in range(5):
        assert (labels[folds == k] == "a").sum() == 6 and (labels[folds == k] == "b").sum() == 3
    assert np.array_equal(folds, fold_assignments(labels, 5, seed=1))
    assert not np.array_equal(folds, fold_assignments(labels, 5, seed=2))
    groups = np.repeat(np.arange(15), 3)  # 15 groups of 3 rows
    grouped = fold_assignments(labels, 3, seed=1, groups=groups)
    for g in range(15):
        assert len(set(grouped[groups == g])) == 1
    with pytest.raises(Exception, match="the smallest class has 2 image"):
        fold_assignments(np.array(["a"] * 10 + ["b"] * 2), 3, seed=0)


@pytest.mark.parametrize("seed", range(8))
def test_group_col_holds_out_whole_groups_in_the_validation_split(tmp_path, seed):
    """--group-col (State Farm's subject, a patient): no group on both sides, about the split's share held out, every
    class still in training, the same split again from the same seed — on random tables of uneven groups."""
    from kit.config import Config
    from kit.data import ReadOptions, load_competition
    from kit.training import split_train_validation

    rng = np.random.default_rng(seed)
    data = make_av_folder(tmp_path / "c", n_per_class=int(rng.integers(12, 30)))
    table = pd.read_csv(data / "train.csv", dtype=str)
    n_groups = int(rng.integers(3, 15))
    table.insert(1, "subject", [f"p{g:03d}" for g in rng.integers(0, n_groups, len(table))])
    if seed % 2:  # one patient holds every image of one class: that group must stay in training
        table.loc[table["label"] == table["label"].iloc[0], "subject"] = "solo"
    table.to_csv(data / "train.csv", index=False)
    comp = load_competition(data, ReadOptions(group_col="subject"))
    split = float(rng.choice([0.1, 0.2, 0.3]))
    config = Config(data=str(data), group_col="subject", validation_split=split, seed=seed)
    train, val = split_train_validation(comp, config)
    assert not set(train["group"]) & set(val["group"]) and len(train) + len(val) == len(table)
    assert set(train["label"]) == set(table["label"]) and len(val) > 0
    assert 0.02 < len(val) / len(table) < 0.7  # whole groups: near the share, not at it
    again = split_train_validation(comp, config)[1]
    assert again["id"].tolist() == val["id"].tolist()


def test_a_column_of_repeated_patients_is_named_with_the_flag_that_groups_it(tmp_path):
    from kit.data import ReadOptions, load_competition

    data = make_av_folder(tmp_path / "c", n_per_class=6)
    table = pd.read_csv(data / "train.csv", dtype=str)
    table["patient_id"] = [f"IP_{i // 3}" for i in range(len(table))]
    table["age"] = [str(40 + i // 2) for i in range(len(table))]  # repeats too, but names no one
    table.to_csv(data / "train.csv", index=False)
    hints = [p for p in load_competition(data).problems if p.code == "group_column"]
    assert len(hints) == 1 and "--group-col patient_id" in str(hints[0]) and "train.csv" in str(hints[0])
    assert not [p for p in load_competition(data, ReadOptions(group_col="patient_id")).problems
                if p.code == "group_column"]
    table["patient_id"] = [f"IP_{i}" for i in range(len(table))]  # one image each: nothing to keep together
    table.to_csv(data / "train.csv", index=False)
    assert not [p for p in load_competition(data).problems if p.code == "group_column"]


@pytest.fixture(scope="module")
def kfold_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kf")
    data = make_av_folder(tmp / "c", n_per_class=10)
    # one probability column per class, in an order that is not alphabetical
    ids = pd.read_csv(data / "test.csv", dtype=str)["id"]
    write_csv(data / "sample_submission.csv", ["id", "emu", "cat", "dog"], [(i, 0, 0, 0) for i in ids])
    result = invoke("train", data, "--folds", "3", "--runs-dir", tmp / "runs", "--name", "kf", *FAST)
    assert result.exit_code == 0, result.output
    return tmp, data, result


def test_kfold_run_holds_fold_models_and_oof_keyed_by_id(kfold_run):
    tmp, data, result = kfold_run
    run = tmp / "runs" / "kf"
    for k in range(3):
        assert (run / f"fold{k}" / "model.keras").is_file()
    oof = pd.read_csv(run / "oof.csv", dtype=str)
    train_ids = pd.read_csv(data / "train.csv", dtype=str)["id"]
    assert sorted(oof["id"]) == sorted(train_ids)  # every training image predicted exactly once, by id
    folds = pd.read_csv(run / "folds.csv", dtype=str).set_index("id")["fold"]
    assert (oof.set_index("id")["fold"] == folds.loc[oof["id"]]).all()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["oof_accuracy"] == pytest.approx((oof["label"] == oof["predicted"]).mean())
    assert len(metrics["fold_accuracies"]) == 3
    assert "Out-of-fold accuracy" in result.output


def test_kfold_submission_averages_folds_in_sample_column_order(kfold_run):
    tmp, data, _ = kfold_run
    run = tmp / "runs" / "kf"
    out = tmp / "kf.csv"
    assert invoke("make-submission", run, data, "-o", out).exit_code == 0
    sub = pd.read_csv(out, dtype={"id": str})
    assert list(sub.columns) == ["id", "emu", "cat", "dog"]
    assert np.allclose(sub[["emu", "cat", "dog"]].sum(1), 1.0, atol=1e-5)
    singles = []
    for k in range(3):
        path = tmp / f"fold{k}.csv"
        invoke("make-submission", run / f"fold{k}", data, "-o", path)
        singles.append(pd.read_csv(path, dtype={"id": str})[["emu", "cat", "dog"]].to_numpy())
    np.testing.assert_allclose(sub[["emu", "cat", "dog"]].to_numpy(), np.mean(singles, axis=0), atol=2e-5)


def test_weighted_ensemble_of_runs_and_its_validation_score(kfold_run):
    tmp, data, _ = kfold_run
    runs = tmp / "runs"
    for name, model in (("e1", "baseline"), ("e2", "lenet")):
        assert invoke("train", data, "--model", model, "--runs-dir", runs, "--name", name, *FAST).exit_code == 0
    out = tmp / "ens.csv"
    result = invoke("make-submission", runs / "e1", runs / "e2", data, "--weights", "3,1", "-o", out)
    assert result.exit_code == 0, result.output
    line = [l for l in result.output.splitlines() if l.startswith("Ensemble validation accuracy: ")][0]
    v1 = pd.read_csv(runs / "e1" / "val_predictions.csv", dtype={"id": str}).set_index("id").sort_index()
    v2 = pd.read_csv(runs / "e2" / "val_predictions.csv", dtype={"id": str}).set_index("id").sort_index()
    cols = ["p:cat", "p:dog", "p:emu"]
    mean = 0.75 * v1[cols].to_numpy() + 0.25 * v2[cols].to_numpy()
    expected = (np.array(["cat", "dog", "emu"])[mean.argmax(1)] == v1["label"].to_numpy()).mean()
    assert line == f"Ensemble validation accuracy: {expected:.4f}"
    singles = []
    for name in ("e1", "e2"):
        invoke("make-submission", runs / name, data, "-o", tmp / f"{name}.csv")
        singles.append(pd.read_csv(tmp / f"{name}.csv", dtype={"id": str})[["emu", "cat", "dog"]].to_numpy())
    got = pd.read_csv(out, dtype={"id": str})[["emu", "cat", "dog"]].to_numpy()
    np.testing.assert_allclose(got, 0.75 * singles[0] + 0.25 * singles[1], atol=2e-5)


def test_tta_needs_a_run_trained_with_augmentation(kfold_run):
    tmp, data, _ = kfold_run
    run = tmp / "runs" / "kf" / "fold0"  # trained with --augment none
    invoke("make-submission", run, data, "-o", tmp / "plain.csv")
    result = invoke("make-submission", run, data, "-o", tmp / "tta.csv", "--tta", "5")
    assert result.exit_code == 0 and "No TTA for" in result.output and "trained without augmentation" in result.output
    plain = pd.read_csv(tmp / "plain.csv")[["emu", "cat", "dog"]].to_numpy()
    assert np.array_equal(plain, pd.read_csv(tmp / "tta.csv")[["emu", "cat", "dog"]].to_numpy())


def test_tta_is_used_only_where_it_helps_on_validation(kfold_run):
    import re

    tmp, data, _ = kfold_run
    runs = tmp / "runs"
    flags = [f for f in FAST if f != "none" and f != "--augment"] + ["--augment", "light"]
    assert invoke("train", data, "--runs-dir", runs, "--name", "aug", *flags).exit_code == 0
    invoke("make-submission", runs / "aug", data, "-o", tmp / "aug-plain.csv")
    result = invoke("make-submission", runs / "aug", data, "-o", tmp / "aug-tta.csv", "--tta", "5")
    assert result.exit_code == 0, result.output
    found = re.search(r"TTA \(5 views\) on .*validation split: (\w+) ([0-9.]+) without, ([0-9.]+) with; "
                      r"(used|not used)", result.output)
    assert found, result.output
    metric, without, with_views, verdict = found[1], float(found[2]), float(found[3]), found[4]
    metrics = json.loads((runs / "aug" / "metrics.json").read_text())
    assert metric == metrics["metric"] == "log_loss"  # the sample asks for probabilities per class
    assert without == pytest.approx(metrics["val_score"], abs=1e-4)  # the plain score is the run's own
    assert (verdict == "used") == (with_views < without)
    plain = pd.read_csv(tmp / "aug-plain.csv")[["emu", "cat", "dog"]].to_numpy()
    tta = pd.read_csv(tmp / "aug-tta.csv")[["emu", "cat", "dog"]].to_numpy()
    assert np.array_equal(plain, tta) == (verdict == "not used")


def test_tta_views_come_from_the_training_augmentation():
    import tensorflow as tf

    from kit.predict import tta_views

    images = tf.constant(np.arange(2 * 25 * 25 * 1, dtype=np.uint8).reshape(2, 25, 25, 1))
    views = tta_views(4, "strong", image_size=25)
    assert views[0] is None and len(views) == 4
    assert np.array_equal(views[1](images).numpy(), images.numpy()[:, :, ::-1])  # flips: strong trains with them
    shifted = views[2](images).numpy()
    assert shifted.shape == (2, 25, 25, 1) and np.array_equal(shifted[:, :, :-2], images.numpy()[:, :, 2:])
    assert np.array_equal(tta_views(2, "shift-vflip", 25)[1](images).numpy(), images.numpy()[:, ::-1])
    light = tta_views(3, "light", 25)  # shifts and zoom only: no mirror image
    assert len(light) == 3 and not np.array_equal(light[1](images).numpy(), images.numpy()[:, :, ::-1])
    assert tta_views(5, "none", 25) == [None] and tta_views(1, "strong", 25) == [None]


def _imbalanced(tmp_path):
    from conftest import make_image

    root = tmp_path / "imb"
    (root / "train").mkdir(parents=True)
    rows = []
    for k in range(40):
        label = "cat" if k < 34 else "dog"
        make_image(label, k).save(root / "train" / f"{k}.png")
        rows.append((k, label))
    write_csv(root / "train.csv", ["id", "label"], rows)
    return root


def test_class_weight_sampling_and_metric_choices_run_and_report_counts(tmp_path):
    data = _imbalanced(tmp_path)
    for name, flags in (("cw", ["--class-weight", "balanced"]), ("bs", ["--sampling", "balanced"]),
                        ("f1", ["--metric", "f1_macro"]), ("ll", ["--metric", "log_loss"])):
        result = invoke("train", data, *flags, "--runs-dir", tmp_path / "runs", "--name", name, *FAST)
        assert result.exit_code == 0, result.output
        assert "Class counts (train): cat: 27, dog: 5" in result.output
        history = pd.read_csv(tmp_path / "runs" / name / "history.csv")
        assert len(history) == 2
        if name == "f1":
            assert "val_f1_macro" in history


def test_balanced_stream_draws_classes_equally(tmp_path):
    from kit.pipeline import make_balanced_dataset

    data = _imbalanced(tmp_path)
    paths = [data / "train" / f"{k}.png" for k in range(40)]
    labels = [0] * 34 + [1] * 6
    ds = make_balanced_dataset(paths, labels, image_size=8, channels=1, batch_size=50, seed=0)
    drawn = np.concatenate([y.numpy() for _, y in ds.take(20)])
    assert abs(drawn.mean() - 0.5) < 0.05  # the 15% class makes up half of what is drawn


def test_class_weight_rejects_unknown_value(tmp_path):
    result = CliRunner().invoke(cli, ["train", str(make_av_folder(tmp_path / "c")), "--class-weight", "heavy"])
    assert result.exit_code == 2 and "'heavy' is not one of 'none', 'balanced'" in result.output


@pytest.mark.parametrize("fmt", ["savedmodel", "tflite"])
def test_export_matches_kit_predictions(kfold_run, fmt):
    tmp, data, _ = kfold_run
    run = tmp / "runs" / "kf" / "fold1"
    result = invoke("export", run, "--format", fmt)
    assert result.exit_code == 0, result.output
    line = result.output.strip()
    assert "on 10 validation images it agrees with kit on 100.00%" in line
    assert (run / "export" / ("savedmodel" if fmt == "savedmodel" else "model.tflite")).exists()
    assert invoke("export", run, "--format", fmt).exit_code == 2  # never overwritten without --force


def test_a_kfold_run_exports_as_one_model_averaging_its_folds(kfold_run, tmp_path):
    import tensorflow as tf

    from kit.pipeline import load_images
    from kit.predict import predict_proba
    from kit.runs import Run

    tmp, data, _ = kfold_run
    run = tmp / "runs" / "kf"
    out = tmp_path / "kf-savedmodel"
    result = invoke("export", run, "-o", out)
    assert result.exit_code == 0, result.output
    assert "it agrees with kit on 100.00%" in result.output
    folds = Run.open(run).members()
    assert len(folds) >= 2
    paths = sorted((data / "test").iterdir())
    kit_mean = np.mean([predict_proba(f.load_model(), paths, f.image_size, f.channels) for f in folds], axis=0)
    serve = tf.saved_model.load(str(out)).signatures["serving_default"]
    exported = list(serve(tf.constant(load_images(paths, folds[0].image_size, folds[0].channels))).values())[0]
    assert np.allclose(exported.numpy(), kit_mean, atol=1e-5)  # the folds' average, as make-submission takes it


def test_kfold_run_predicts_with_the_mean_of_its_folds_and_keeps_no_checkpoints(kfold_run):
    import kit

    tmp, data, _ = kfold_run
    run = kit.load_run(tmp / "runs" / "kf")
    table = run.predict(data / "test")
    fold = kit.load_run(tmp / "runs" / "kf" / "fold0").predict(data / "test")
    assert len(table) == 6 and np.allclose(table[run.class_names].sum(1), 1, atol=1e-4)
    assert not np.allclose(table[run.class_names], fold[run.class_names])  # three folds averaged, not one
    assert not list((tmp / "runs" / "kf").rglob("checkpoints"))  # the finished run and its folds: no checkpoints


@pytest.mark.parametrize("per_class, noted", [({"cat": 40, "dog": 4}, True), ({"cat": 30, "dog": 30}, False)])
def test_a_validation_split_with_a_handful_of_one_class_says_its_scores_are_noisy(tmp_path, per_class, noted):
    from kit.config import Config
    from kit.data import load_competition
    from kit.training import _split_for

    root = tmp_path / "c"
    for label, n in per_class.items():
        (root / "train" / label).mkdir(parents=True)
        for i in range(n):
            (root / "train" / label / f"{i}.png").write_bytes(b"")  # reading the table needs no pixels
    lines = []
    _split_for(load_competition(root), Config(data=str(root)), lines.append)
    assert any("Note: validation holds 1 image(s) of 'dog'" in line and "--folds 5" in line for line in lines) == noted
