"""Every kind of answer a leaderboard scores (#21): top-k guesses with MAP@k (Humpback-style, with new_whale placed
by a tuned threshold), multi-label tags with F-beta (Planet-style, two test folders), binary log loss (Redux-style),
and the metrics behind them, in one place. Each end-to-end test reads a fixture in the real competition's layout,
checks the written format against the sample and scores the submission against answers kept outside the folder."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import folder_hash, make_image, write_csv
from PIL import Image
from sklearn.metrics import fbeta_score

from kit.answers import Answer, decide_answer, encode_labels
from kit.cli import cli
from kit.config import Config
from kit.data import strata, tag_separator
from kit.errors import KitError
from kit.metrics import (
    chosen_tags,
    evaluate,
    f_beta_samples,
    mean_average_precision,
    ranked,
    tune_thresholds,
    tune_unknown,
)

FAST = ["--epochs", "2", "--batch-size", "8", "--image-size", "12", "--augment", "none"]
TAGS = ("agriculture", "clear", "cloudy", "haze", "primary", "road")
QUADRANTS = {  # each tag brightens its own part of the image, so tags add up like Planet's do
    "agriculture": (slice(0, 8), slice(0, 8)), "clear": (slice(0, 8), slice(8, 16)),
    "cloudy": (slice(8, 16), slice(0, 8)), "haze": (slice(8, 16), slice(8, 16)),
    "primary": (slice(4, 12), slice(4, 12)), "road": (slice(0, 16), slice(7, 9)),
}


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def tagged_image(tags, seed: int) -> Image.Image:
    a = np.random.default_rng(seed).integers(0, 40, (16, 16), dtype=np.uint8)
    for tag in tags:
        a[QUADRANTS[tag]] = 230
    return Image.fromarray(a, "L").convert("RGB")


def random_tags(rng) -> list[str]:
    chosen = [t for t in TAGS if rng.random() < 0.35]
    return chosen or [TAGS[int(rng.integers(len(TAGS)))]]


def planet_folder(root):
    """Planet's layout: train_v2.csv (image_name,tags), train-jpg/, test-jpg/ and test-jpg-additional/, the v2
    sample (its tags a constant), and the file-mapping table of its re-release; answers beside the folder."""
    rng = np.random.default_rng(0)
    (root / "train-jpg").mkdir(parents=True)
    rows = []
    for k in range(60):
        tags = random_tags(rng)
        tagged_image(tags, k).save(root / "train-jpg" / f"train_{k}.jpg", quality=95)
        rows.append((f"train_{k}", " ".join(tags)))
    answers = []
    for j in range(12):
        name, folder = (f"test_{j}", "test-jpg") if j < 8 else (f"file_{j}", "test-jpg-additional")
        (root / folder).mkdir(exist_ok=True)
        tags = random_tags(rng)
        tagged_image(tags, 500 + j).save(root / folder / f"{name}.jpg", quality=95)
        answers.append((name, " ".join(tags)))
    write_csv(root / "train_v2.csv", ["image_name", "tags"], rows)
    write_csv(root / "sample_submission_v2.csv", ["image_name", "tags"],
              [(n, "primary clear agriculture road water") for n, _ in answers])
    write_csv(root / "test_v2_file_mapping.csv", ["old", "new"], [("file_8.tif", "file_18830.tif")])
    write_csv(root.parent / "planet_answers.csv", ["image_name", "tags"], answers)
    return root


def whale_folder(root):
    """Humpback's layout: train.csv (Image,Id) with new_whale and many one-image whales, five ids per sample row."""
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    patterns = ("cat", "dog", "emu")
    rows = [(f"{k:04x}e2e2.jpg", "new_whale", "emu") for k in range(12)]
    rows += [(f"{k:04x}a1a1.jpg", f"w_{k % 6:07x}", patterns[k % 2]) for k in range(18)]  # 6 whales, 3 images
    rows += [(f"{k:04x}b2b2.jpg", f"w_{100 + k:07x}", "cat") for k in range(8)]  # one image each
    for j, (name, _, pattern) in enumerate(rows):
        make_image(pattern, j, size=16, mode="RGB").save(root / "train" / name, quality=95)
    tests = [(f"{j:04x}c3c3.jpg", ("new_whale", "w_0000000", "w_0000001")[j % 3]) for j in range(9)]
    for j, (name, whale) in enumerate(tests):
        make_image({"new_whale": "emu", "w_0000000": "cat", "w_0000001": "dog"}[whale], 900 + j, size=16,
                   mode="RGB").save(root / "test" / name, quality=95)
    write_csv(root / "train.csv", ["Image", "Id"], [(n, w) for n, w, _ in rows])
    write_csv(root / "sample_submission.csv", ["Image", "Id"],
              [(n, "new_whale w_23a388d w_9b5109b w_9c506f6 w_0369a5c") for n, _ in tests])
    write_csv(root.parent / "whale_answers.csv", ["Image", "Id"], tests)
    return root


def redux_folder(root):
    """Dogs vs. Cats Redux: train/cat.0.jpg …, test/1.jpg …, sample id,label (P(dog), 0.5)."""
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    for k in range(12):
        for animal in ("cat", "dog"):
            make_image(animal, k + (50 if animal == "dog" else 0), size=16, mode="RGB").save(
                root / "train" / f"{animal}.{k}.jpg", quality=95)
    answers = []
    for j in range(1, 11):
        animal = ("cat", "dog")[j % 2]
        make_image(animal, 700 + j, size=16, mode="RGB").save(root / "test" / f"{j}.jpg", quality=95)
        answers.append((j, int(animal == "dog")))
    write_csv(root / "sample_submission.csv", ["id", "label"], [(j, 0.5) for j, _ in answers])
    write_csv(root.parent / "redux_answers.csv", ["id", "label"], answers)
    return root


def same_shape_as_sample(sub_path, sample_path) -> pd.DataFrame:
    """The written submission, after checking its header and ids (in order) are the sample's."""
    sub = pd.read_csv(sub_path, dtype=str, keep_default_na=False)
    sample = pd.read_csv(sample_path, dtype=str, keep_default_na=False)
    assert list(sub.columns) == list(sample.columns) and sub.iloc[:, 0].tolist() == sample.iloc[:, 0].tolist()
    return sub


def score(sub, answers, metric, *extra) -> float:
    result = invoke("score", sub, answers, "--metric", metric, *extra)
    assert result.exit_code == 0, result.output
    return float(result.output.strip().split(": ")[1])


# ------------------------------------------------------------------------------------------ end to end


def test_planet_tags_from_two_test_folders_scored_by_f2(tmp_path):
    data = planet_folder(tmp_path / "planet-understanding-the-amazon-from-space")
    before = folder_hash(data)
    runs = tmp_path / "runs"
    result = invoke("run", data, "--runs-dir", runs, "--name", "tags", "--metric", "f2", *FAST,
                    "--learning-rate", "0.01", "--epochs", "4")
    assert result.exit_code == 0, result.output
    assert "Submission: the tags above per-tag thresholds tuned on validation; metric f2" in result.output
    assert folder_hash(data) == before
    run = runs / "tags"
    assert json.loads((run / "class_names.json").read_text()) == list(TAGS)  # the tags are the classes
    config = json.loads((run / "config.json").read_text())
    assert (config["submission"], config["metric"], config["tag_separator"]) == ("tags", "f2", " ")
    sub = same_shape_as_sample(run / "submission.csv", data / "sample_submission_v2.csv")
    written = [v.split(" ") for v in sub["tags"]]
    assert all(row and set(row) <= set(TAGS) and row == sorted(row) for row in written)  # stable (class) order
    thresholds = json.loads((run / "thresholds.json").read_text())["thresholds"]
    assert set(thresholds) == set(TAGS) and all(0 < t < 1 for t in thresholds.values())
    # the score kit reports for the submission is the F2 of its tags, computed here independently
    answers = pd.read_csv(tmp_path / "planet_answers.csv", dtype=str).set_index("image_name").loc[sub["image_name"]]
    truth = np.array([[t in a.split() for t in TAGS] for a in answers["tags"]])
    given = np.array([[t in row for t in TAGS] for row in written])
    expected = fbeta_score(truth, given, beta=2, average="samples", zero_division=0)
    assert score(run / "submission.csv", tmp_path / "planet_answers.csv", "f2") == pytest.approx(expected, abs=1e-5)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["metric"] == "f2" and 0 <= metrics["val_f2"] <= 1
    history = pd.read_csv(run / "history.csv")
    assert "val_f2" in history and "val_accuracy" not in history  # the competition's metric, every epoch
    report = (run / "classification_report.txt").read_text()
    assert all(t in report for t in TAGS) and not (run / "confusion_matrix.csv").exists()
    html = (run / "report.html").read_text()
    assert "validation f2" in html and "Thresholds tuned on validation" in html and "Per tag" in html
    table = invoke("runs", runs, "--csv")
    assert "tags" in table.output and ",f2," in table.output


def test_tags_with_folds_and_an_ensemble_average_probabilities_before_thresholds(tmp_path):
    data = planet_folder(tmp_path / "planet")
    runs = tmp_path / "runs"
    result = invoke("run", data, "--runs-dir", runs, "--name", "k", "--folds", "2", "--multi-label", *FAST,
                    "--epochs", "1")
    assert result.exit_code == 0, result.output
    oof_thresholds = json.loads((runs / "k" / "thresholds.json").read_text())["thresholds"]  # tuned out of fold
    assert set(oof_thresholds) == set(TAGS)
    out = tmp_path / "ensemble.csv"
    ensemble = invoke("make-submission", runs / "k", runs / "k" / "fold0", "-o", out, "--tta", "2")
    assert ensemble.exit_code == 0, ensemble.output
    tags = pd.read_csv(out, dtype=str)["tags"]
    assert all(set(v.split()) <= set(TAGS) for v in tags)
    assert 0 <= score(out, tmp_path / "planet_answers.csv", "f1") <= 1


def test_whale_top5_with_new_whale_placed_by_a_tuned_threshold(tmp_path):
    data = whale_folder(tmp_path / "humpback-whale-identification")
    runs = tmp_path / "runs"
    result = invoke("run", data, "--runs-dir", runs, "--name", "w", "--unknown-class", "new_whale", *FAST,
                    "--learning-rate", "0.01")
    assert result.exit_code == 0, result.output
    assert "the 5 most probable classes per row, new_whale placed by a threshold" in result.output
    assert "metric map@5" in result.output
    sub = same_shape_as_sample(runs / "w" / "submission.csv", data / "sample_submission.csv")
    classes = set(json.loads((runs / "w" / "class_names.json").read_text()))
    guesses = [v.split(" ") for v in sub["Id"]]
    assert all(len(g) == 5 and len(set(g)) == 5 and set(g) <= classes for g in guesses)
    assert "new_whale" in classes and "unknown_threshold" in json.loads((runs / "w" / "thresholds.json").read_text())
    val = pd.read_csv(runs / "w" / "val_predictions.csv", dtype=str)
    assert not val["label"].isin([f"w_{100 + k:07x}" for k in range(8)]).any()  # one-image whales: training only
    answers = pd.read_csv(tmp_path / "whale_answers.csv", dtype=str).set_index("Image").loc[sub["Image"], "Id"]
    expected = np.mean([1 / (g.index(a) + 1) if a in g else 0 for g, a in zip(guesses, answers)])
    printed = score(runs / "w" / "submission.csv", tmp_path / "whale_answers.csv", "map@5")
    assert printed == pytest.approx(expected, abs=5e-6)  # `kit score` prints 5 decimals
    metrics = json.loads((runs / "w" / "metrics.json").read_text())
    assert metrics["metric"] == "map@5" and metrics["val_score"] >= metrics["val_accuracy"]  # MAP@5 ≥ top-1


def test_redux_log_loss_best_epoch_and_clip(tmp_path):
    data = redux_folder(tmp_path / "dogs-vs-cats-redux-kernels-edition")
    runs = tmp_path / "runs"
    result = invoke("run", data, "--runs-dir", runs, "--name", "p", "--positive", "dog", "--metric", "log_loss",
                    "--clip", "0.05", *FAST, "--learning-rate", "0.01", "--epochs", "3")
    assert result.exit_code == 0, result.output
    assert "P(dog); metric log_loss" in result.output
    same_shape_as_sample(runs / "p" / "submission.csv", data / "sample_submission.csv")
    values = pd.read_csv(runs / "p" / "submission.csv")["label"]
    assert values.min() >= 0.05 and values.max() <= 0.95
    loss = score(runs / "p" / "submission.csv", tmp_path / "redux_answers.csv", "log_loss")
    assert loss < np.log(2)  # better than a constant 0.5
    history = pd.read_csv(runs / "p" / "history.csv")
    metrics = json.loads((runs / "p" / "metrics.json").read_text())
    best = history.loc[history["val_loss"].idxmin()]  # the kept model is the epoch of lowest validation loss
    assert metrics["val_loss"] == pytest.approx(best["val_loss"], rel=1e-3)


def test_binary_auc_picks_the_best_epoch(tmp_path):
    from test_answers import _binary_folder

    data = _binary_folder(tmp_path / "aerial-cactus-identification")
    runs = tmp_path / "runs"
    result = invoke("run", data, "--runs-dir", runs, "--name", "a", *FAST, "--learning-rate", "0.02", "--epochs", "3")
    assert result.exit_code == 0, result.output
    history = pd.read_csv(runs / "a" / "history.csv")
    metrics = json.loads((runs / "a" / "metrics.json").read_text())
    assert metrics["metric"] == "auc" and "val_auc" in history
    sub = same_shape_as_sample(runs / "a" / "submission.csv", data / "sample_submission.csv")
    assert 0.5 <= score(runs / "a" / "submission.csv", tmp_path / "answers.csv", "auc") <= 1.0
    assert sub["has_cactus"].astype(float).between(0, 1).all()
    # the kept model scores the best epoch's AUC on the same split: it was chosen by AUC
    assert metrics["val_auc"] == pytest.approx(history["val_auc"].max(), abs=1e-6)


@pytest.mark.parametrize("flags,message", [
    (["--metric", "f2"], "--metric f2: scores tags"),
    (["--metric", "map@9"], "holds 5 guesses per row"),
    (["--unknown-class", "w_404"], "--unknown-class w_404: not a class"),
    (["--multi-label"], "--submission tags: the training labels hold one class each"),
    (["--metric", "auc"], "--metric auc: scores probabilities (P(positive), or one per class"),
])
def test_answers_that_cannot_be_are_refused_before_training(tmp_path, flags, message):
    data = whale_folder(tmp_path / "whales")
    result = invoke("run", data, "--runs-dir", tmp_path / "runs", "--name", "x", *FAST, *flags)
    assert result.exit_code != 0 and message in result.output, result.output
    assert not (tmp_path / "runs" / "x").exists()


def test_a_bad_metric_name_is_refused_by_the_option():
    result = invoke("train", ".", "--metric", "map@0")
    assert result.exit_code == 2 and "--metric" in result.output and "map@K" in result.output


# --------------------------------------------------------------------------------------------- units


def test_tags_are_told_from_class_names_with_spaces():
    planet = ["clear primary", "haze primary road", "cloudy", "clear primary road", "haze primary", "clear road"]
    assert tag_separator(planet) == " "
    assert tag_separator(["Common wheat", "Common Chickweed", "Maize", "Fat Hen"]) == ""  # Plant Seedlings
    assert tag_separator(["Type 1", "Type 2", "Type 3"]) == ""
    assert tag_separator(["a|b", "b", "a", "a|c", "c|b"]) == "|"
    assert tag_separator(["cat", "dog"], "tags") == "" and tag_separator(planet, "label") == ""
    assert tag_separator(["Common wheat", "Maize"], "tags") == " "  # forced


def test_the_sample_decides_top_k_and_spaces_in_class_names_refuse_it():
    sample = pd.DataFrame({"Image": ["a.jpg", "b.jpg"], "Id": ["new_whale w_1 w_2 w_3 w_4"] * 2})
    assert decide_answer(sample, [f"w_{i}" for i in range(9)], Config()) == Answer("top-k", k=5)
    with pytest.raises(KitError, match="5 space-separated guesses per row, but class names hold spaces"):
        decide_answer(sample, ["Common wheat", "b", "c", "d", "e", "f"], Config())  # "Common wheat" = 2 guesses
    seedlings = pd.DataFrame({"file": ["a.png", "b.png"], "species": ["Sugar beet"] * 2})  # labels with spaces
    assert decide_answer(seedlings, ["Sugar beet", "Common wheat", "Maize"], Config()).kind == "label"
    planet = pd.DataFrame({"image_name": ["a", "b"], "tags": ["primary clear"] * 2})  # tags read as labels
    assert decide_answer(planet, ["clear primary", "haze primary road", "cloudy"], Config()).kind == "label"
    with pytest.raises(KitError, match="class names hold spaces"):
        decide_answer(sample, ["Common wheat", "b", "c"], Config(submission="top-k"))


def test_map_at_k_and_the_unknown_class():
    y = np.array([0, 1, 2, 3])
    guesses = np.array([[0, 1, 2], [2, 1, 0], [0, 1, 3], [3, 2, 1]])
    assert mean_average_precision(y, guesses) == pytest.approx((1 + 1 / 2 + 0 + 1) / 4)
    probs = np.array([[0.1, 0.6, 0.3], [0.05, 0.9, 0.05]])
    assert ranked(probs, 2).tolist() == [[1, 2], [1, 0]]
    assert ranked(probs, 3, unknown=0, threshold=0.7).tolist() == [[0, 1, 2], [1, 0, 2]]  # unknown first below 0.7
    # validation where the unknown class is the truth whenever the model is unsure: a threshold beats none
    rng = np.random.default_rng(0)
    sure = rng.random(200) < 0.5
    truth = np.where(sure, 1 + rng.integers(0, 3, 200), 0)
    p = np.full((200, 4), 0.1)
    p[np.arange(200), np.where(sure, truth, 1 + rng.integers(0, 3, 200))] = np.where(sure, 0.8, 0.4)
    p[:, 0] = 0.05
    t = tune_unknown(truth, p, 3, unknown=0)
    assert t is not None and 0.4 < t <= 0.8
    assert mean_average_precision(truth, ranked(p, 3, 0, t)) > mean_average_precision(truth, ranked(p, 3))


def test_f_beta_matches_scikit_learn_and_tuned_thresholds_help():
    rng = np.random.default_rng(1)
    truth = rng.random((300, 5)) < 0.3
    truth[~truth.any(1), 0] = True
    chosen = rng.random((300, 5)) < 0.4
    for beta in (1, 2):
        assert f_beta_samples(truth, chosen, beta) == pytest.approx(
            fbeta_score(truth, chosen, beta=beta, average="samples", zero_division=0))
    # a rare tag the model is unsure of: a lower threshold serves F2 better than 0.5
    probs = np.clip(truth * 0.35 + rng.random((300, 5)) * 0.3, 0, 1)
    tuned = tune_thresholds(truth, probs, 2.0)
    assert f_beta_samples(truth, chosen_tags(probs, tuned), 2) > f_beta_samples(truth, chosen_tags(probs, [0.5] * 5),
                                                                                2)
    value, decision = evaluate("f2", truth.astype(float), probs)
    assert decision.thresholds == tuned and value == pytest.approx(f_beta_samples(truth, chosen_tags(probs, tuned), 2))


def test_tag_targets_and_their_stratification():
    labels = pd.Series(["a b", "b", "c a", "b", "a", "b c"])
    assert encode_labels(labels, ["a", "b", "c"], " ").tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1], [0, 1, 0],
                                                                      [1, 0, 0], [0, 1, 1]]
    assert strata(labels, " ").tolist() == ["a", "b", "c", "b", "a", "c"]  # each image's rarest tag
    assert strata(pd.Series(["a b", "b", "z b"]), " ").tolist() == ["b", "b", "b"]  # a one-image tag: not a stratum


def test_kit_score_checks_guesses_and_tags_before_scoring(tmp_path):
    write_csv(tmp_path / "answers.csv", ["Image", "Id"], [("a", "w1"), ("b", "w2"), ("c", "new_whale")])
    write_csv(tmp_path / "sub.csv", ["Image", "Id"], [("a", "w2 w1"), ("b", "w2"), ("c", "w3 w4 new_whale")])
    assert score(tmp_path / "sub.csv", tmp_path / "answers.csv", "map@5") == pytest.approx((1 / 2 + 1 + 1 / 3) / 3,
                                                                                         abs=1e-5)  # printed: 5 places
    write_csv(tmp_path / "twice.csv", ["Image", "Id"], [("a", "w1"), ("b", "w1 w1"), ("c", "w1")])
    result = invoke("score", tmp_path / "twice.csv", tmp_path / "answers.csv", "--metric", "map@5")
    assert result.exit_code == 2 and "twice.csv:3: map@5 takes at most 5 distinct guesses per row" in result.output
    write_csv(tmp_path / "tags.csv", ["n", "tags"], [("a", "x|y"), ("b", "y")])
    write_csv(tmp_path / "given.csv", ["n", "tags"], [("a", "y"), ("b", "y|x")])
    expected = np.mean([f_beta_samples(np.array([[1, 1]]), np.array([[0, 1]]), 2),
                        f_beta_samples(np.array([[0, 1]]), np.array([[1, 1]]), 2)])
    assert score(tmp_path / "given.csv", tmp_path / "tags.csv", "f2") == pytest.approx(expected, abs=1e-5)


def test_tags_on_a_backbone_fit_the_head_in_closed_form_one_sigmoid_per_tag(tmp_path):
    data = planet_folder(tmp_path / "planet")
    runs = tmp_path / "runs"
    result = invoke("run", data, "--runs-dir", runs, "--name", "t", "--model", "mobilenet_v3_small", "--weights",
                    "none", "--image-size", "32", "--fine-tune-epochs", "1", "--batch-size", "8", "--metric", "f2")
    assert result.exit_code == 0, result.output
    assert "the head fitted to convergence (logistic regression" in result.output
    history = pd.read_csv(runs / "t" / "history.csv")
    assert history["epoch"].tolist() == [1, 2] and "val_f2" in history
    from kit.runs import Run

    model = Run.open(runs / "t").load_model()
    assert model.output_shape == (None, len(TAGS)) and "sigmoid" in str(model.layers[-1].get_config())
    assert all(set(v.split()) <= set(TAGS) for v in pd.read_csv(runs / "t" / "submission.csv", dtype=str)["tags"])
