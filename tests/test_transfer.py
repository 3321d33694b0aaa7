"""Transfer learning on CPU with weights=None: every backbone, preprocessing parity, frozen BatchNorm,
cached frozen phase = plain frozen phase, and the CLI paths."""

import hashlib
import re

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_class_folders, make_image

from kit.cli import cli
from kit.transfer import (
    BACKBONES,
    build_transfer_model,
    default_backbone_size,
    extract_features,
    preprocessing_layers,
    unfreeze_top,
)


def _apply(layers_, x):
    for layer in layers_:
        x = layer(x)
    return np.asarray(x)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_every_backbone_builds_and_trains_one_step(name):
    tm = build_transfer_model(name, 32, 3, 3, weights="none")
    tm.model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    before = [w.copy() for w in tm.head.get_weights()]
    tm.model.fit(x, np.array([0, 1, 2, 0]), epochs=1, verbose=0)
    assert tm.model.output_shape == (None, 3)
    assert any(not np.array_equal(a, b) for a, b in zip(before, tm.head.get_weights()))


@pytest.mark.parametrize("kind,reference", [
    ("tf", keras.applications.mobilenet_v2.preprocess_input),
    ("caffe", keras.applications.resnet50.preprocess_input),
    ("raw", keras.applications.efficientnet.preprocess_input),
])
def test_preprocessing_parity(kind, reference):
    raw = np.random.default_rng(1).integers(0, 256, (2, 5, 5, 3), dtype=np.uint8)
    ours = _apply(preprocessing_layers(kind, 3), raw)
    np.testing.assert_allclose(ours, reference(raw.astype("float32").copy()), atol=1e-4)


def test_grayscale_is_repeated_to_rgb():
    gray = np.random.default_rng(2).integers(0, 256, (2, 4, 4, 1), dtype=np.uint8)
    out = _apply(preprocessing_layers("raw", 1), gray)
    assert out.shape == (2, 4, 4, 3) and np.allclose(out, np.repeat(gray, 3, -1))


def test_model_applies_documented_preprocessing_before_backbone():
    tm = build_transfer_model("resnet50", 32, 3, 2, weights="none")
    raw = np.random.default_rng(3).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    via_model = tm.features(raw)
    via_doc = keras.layers.GlobalAveragePooling2D()(
        tm.backbone(keras.applications.resnet50.preprocess_input(raw.astype("float32").copy()), training=False))
    np.testing.assert_allclose(np.asarray(via_model), np.asarray(via_doc), rtol=1e-4, atol=1e-4)


def test_batchnorm_stays_frozen_while_fine_tuning():
    tm = build_transfer_model("mobilenet_v3_small", 32, 3, 2, weights="none")
    opened = unfreeze_top(tm.backbone, 1000)
    assert opened > 0
    bns = [l for l in tm.backbone.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bns and all(not l.trainable for l in bns)
    stats = [np.array(w) for l in bns for w in l.non_trainable_weights]
    convs = [l for l in tm.backbone.layers if l.trainable and l.weights]
    kernel = np.array(convs[-1].weights[0])
    tm.model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(4).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    tm.model.fit(x, np.arange(8) % 2, epochs=2, batch_size=4, verbose=0)
    assert all(np.array_equal(a, np.array(w)) for a, w in zip(stats, [w for l in bns for w in l.non_trainable_weights]))
    assert not np.array_equal(kernel, np.array(convs[-1].weights[0]))  # the unfrozen top did train


@pytest.mark.parametrize("head", ["pool", "flatten"])
def test_cached_frozen_phase_equals_plain_frozen_fit(tmp_path, head):
    import tensorflow as tf

    rng = np.random.default_rng(5)
    images = rng.integers(0, 255, (24, 32, 32, 3), dtype=np.uint8)
    labels = (np.arange(24) % 3).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)
    weights = []
    for cached in (False, True):
        keras.utils.set_random_seed(7)
        tm = build_transfer_model("mobilenet_v2", 32, 3, 3, weights="none", dropout=0.0, head=head)
        if cached:
            x, y = extract_features(tm.features, dataset)
            tm.head.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
            tm.head.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
        else:
            tm.model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
            tm.model.fit(dataset, epochs=3, shuffle=False, verbose=0)
        weights.append(tm.head.get_weights())
    for plain, cached in zip(*weights):
        np.testing.assert_allclose(plain, cached, rtol=1e-4, atol=1e-5)


def test_cli_transfer_two_phase_end_to_end(tmp_path):
    data = make_class_folders(tmp_path / "c", n_per_class=6)
    result = CliRunner().invoke(cli, ["run", str(data), "--model", "mobilenet_v3_small", "--weights", "none",
                                      "--image-size", "32", "--epochs", "2", "--fine-tune-epochs", "1",
                                      "--feature-views", "2", "--augment", "light", "--batch-size", "8",
                                      "--runs-dir", str(tmp_path / "runs"), "--name", "t"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Frozen phase: features of 14 images × 2 view(s)" in result.output
    assert "Fine-tuning the top 30 layers" in result.output
    assert re.search(r"for 1 epoch\(s\) at learning rate [0-9.e-]+, about [0-9]+ (s|min) at the frozen phase's pace",
                     result.output), result.output  # no budget: how long it will take, said before it starts
    import json

    metrics = json.loads((tmp_path / "runs" / "t" / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and "frozen_val_score" in metrics  # the closed-form frozen epoch + 1
    assert ("Kept epoch 1 (the head's): fine-tuning epoch 2 scored under it" in result.output) == \
        (metrics["best_epoch"] == 1)  # the output says which epoch is the model when it is not the last
    assert "Frozen phase: the head fitted to convergence (logistic regression, L-BFGS" in result.output
    assert (tmp_path / "runs" / "t" / "submission.csv").is_file()


def test_flowers_recipe_is_the_tutorials_frozen_mobilenet_with_a_flatten_head(tmp_path):
    import json

    data = make_class_folders(tmp_path / "c", n_per_class=6)
    result = CliRunner().invoke(cli, ["run", str(data), "--recipe", "flowers-mobilenet", "--weights", "none",
                                      "--image-size", "64", "--epochs", "1", "--batch-size", "8",
                                      "--runs-dir", str(tmp_path / "runs"), "--name", "f"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Frozen phase" in result.output and "Fine-tuning" not in result.output  # frozen only, as published
    assert "fitted to convergence" not in result.output  # the tutorial's head trains its epochs, as published
    config = json.loads((tmp_path / "runs" / "f" / "config.json").read_text())
    assert (config["model"], config["head"], config["optimizer"], config["augment"]) == \
        ("mobilenet_v2", "flatten", "adam", "none")
    model = keras.models.load_model(tmp_path / "runs" / "f" / "model.keras")
    names = [layer.name for layer in model.layers]
    assert "flatten" in names and "pool" not in names
    assert model.get_layer("flatten").output.shape[-1] == 2 * 2 * 1280  # 64 px → a 2×2 feature map, flattened


def test_cli_backbone_file(tmp_path):
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(x)
    keras.Model(inputs, x).save(tmp_path / "mine.keras")
    data = make_class_folders(tmp_path / "c", n_per_class=6, mode="L")
    args = ["train", str(data), "--backbone-file", str(tmp_path / "mine.keras"), "--image-size", "16", "--epochs", "2",
            "--fine-tune-epochs", "1", "--runs-dir", str(tmp_path / "runs"), "--name", "b"]
    refused = CliRunner().invoke(cli, args)  # a model file kit did not write needs its hash given
    digest = hashlib.sha256((tmp_path / "mine.keras").read_bytes()).hexdigest()
    assert refused.exit_code == 2 and f"not written by kit (sha256 {digest})" in refused.output
    assert f"--trust-model {digest}" in refused.output
    wrong = CliRunner().invoke(cli, args + ["--trust-model", "0" * 64])
    assert wrong.exit_code == 2 and "not written by kit" in wrong.output
    result = CliRunner().invoke(cli, args + ["--trust-model", digest], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Training backbone_file on 14 images" in result.output


def test_default_backbone_size_reads_large_photos_larger_and_keeps_a_fixed_input(tmp_path):
    by_median_side = {28: 224, 224: 224, 255: 224, 256: 256, 300: 288, 4000: 288}
    assert {m: default_backbone_size("efficientnet_b0", "", m) for m in by_median_side} == by_median_side
    flexible, fixed = tmp_path / "flexible.keras", tmp_path / "fixed.keras"
    for path, shape in ((flexible, (None, None, 3)), (fixed, (96, 96, 3))):
        inputs = keras.Input(shape)
        keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs)).save(path)
    assert default_backbone_size("backbone_file", str(flexible), 500) == 288
    assert default_backbone_size("backbone_file", str(fixed), 500) == 96  # the file's own input side wins
    assert default_backbone_size("backbone_file", str(fixed), 50) == 96
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    assert default_backbone_size("backbone_file", str(tmp_path / "broken.keras"), 500) == 288  # loading says why


def test_backbone_file_with_a_lambda_layer_is_refused_even_when_trusted(tmp_path):
    inputs = keras.Input((None, None, 3))
    keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs)).save(tmp_path / "lambda.keras")
    digest = hashlib.sha256((tmp_path / "lambda.keras").read_bytes()).hexdigest()
    data = make_class_folders(tmp_path / "c", n_per_class=6, mode="L")
    result = CliRunner().invoke(cli, ["train", str(data), "--backbone-file", str(tmp_path / "lambda.keras"),
                                      "--trust-model", digest, "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    line = result.output.strip().splitlines()[-1]
    assert line.startswith(f"Error: --backbone-file {tmp_path / 'lambda.keras'}: cannot load in Keras safe mode")
    assert "Lambda" in line


def test_offline_imagenet_weights_error_names_the_file(tmp_path, monkeypatch):
    def offline(fname, origin=None, **kwargs):
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("keras.src.applications.mobilenet_v2.file_utils.get_file", offline)
    data = make_class_folders(tmp_path / "c", n_per_class=6)
    result = CliRunner().invoke(cli, ["train", str(data), "--model", "mobilenet_v2", "--image-size", "96",
                                      "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("Error: ImageNet weights for mobilenet_v2: ")
    assert "/models/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5 is not there and the " \
           "download failed" in line and line.endswith("or use --weights none")


def test_kit_models_lists_every_backbone_with_its_sizes():
    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()}
    for name in BACKBONES:
        assert "224 px (288 for larger photos)" in lines[name], lines[name]


def test_a_mobilenet_read_larger_than_224_loads_without_a_warning(monkeypatch):
    import warnings

    from kit.errors import RunError
    from kit.transfer import load_backbone

    asked = []

    def offline(fname, origin=None, **kwargs):
        asked.append(fname)
        raise Exception(f"URL fetch failure on {origin}")

    monkeypatch.setattr("keras.src.applications.mobilenet_v2.file_utils.get_file", offline)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RunError):
            load_backbone("mobilenet_v2", 288, "imagenet")
    assert asked == ["mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"]  # headless: any size
    assert not [w for w in caught if "input_shape" in str(w.message)]


def test_unfreeze_looks_inside_nested_backbones_and_keeps_their_batchnorm_frozen():
    from kit.transfer import leaf_layers

    inner_in = keras.Input((8, 8, 3))
    x = inner_in
    for i in range(3):
        x = keras.layers.Conv2D(4, 3, padding="same", name=f"c{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
    inner = keras.Model(inner_in, x, name="inner")
    outer_in = keras.Input((8, 8, 3))
    outer = keras.Model(outer_in, inner(keras.layers.Rescaling(1.0)(outer_in)), name="outer")
    assert unfreeze_top(outer, 2) == 2
    trainable = {l.name for l in leaf_layers(outer) if l.trainable and l.weights}
    assert trainable == {"c1", "c2"}
    names = {v.path.split("/")[-2] for v in outer.trainable_weights}
    assert names == {"c1", "c2"}  # BatchNorm (and the bottom conv) contribute no trainable weights


@pytest.mark.parametrize("kind", ["classes", "two classes", "tags"])
def test_the_closed_form_head_is_scikit_learns_logistic_regression(kind):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from kit.transfer import HEAD_STRENGTHS, fit_linear_head

    rng = np.random.default_rng(3)
    classes = 2 if kind == "two classes" else 4
    centres = rng.normal(0, 1, (classes, 12))
    labels = rng.integers(0, classes, 300)
    x = (centres[labels] + rng.normal(0, 1.5, (300, 12))) * rng.uniform(0.5, 20, 12) + 3  # unscaled features
    y = labels if kind != "tags" else (rng.random((300, classes)) < 0.3) | (np.eye(classes)[labels] > 0)
    y = y.astype(np.float32) if kind == "tags" else y
    kernel, bias, c = fit_linear_head(x[:200], y[:200], x[200:], y[200:], classes)
    assert kernel.shape == (12, classes) and c in HEAD_STRENGTHS
    logits = x[200:] @ kernel + bias
    for t in range(classes if kind == "tags" else 1):
        target = y[:200, t] if kind == "tags" else y[:200]
        reference = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)).fit(x[:200], target)
        if kind == "tags":
            np.testing.assert_allclose(1 / (1 + np.exp(-logits[:, t])), reference.predict_proba(x[200:])[:, 1],
                                       atol=1e-4)
        else:
            probs = np.exp(logits - logits.max(1, keepdims=True))
            np.testing.assert_allclose(probs / probs.sum(1, keepdims=True), reference.predict_proba(x[200:]),
                                       atol=1e-4)


def test_the_frozen_phases_second_view_is_the_mirror_image_when_the_augmentation_mirrors():
    import tensorflow as tf

    from kit.config import Config
    from kit.fit import _view, feature_views

    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)  # no image equals its mirror
    plain = tf.data.Dataset.from_tensor_slices((images, np.zeros(2, "int32"))).batch(2)
    first = lambda ds: next(iter(ds))[0].numpy()
    strong, vflip = Config(augment="strong"), Config(augment="shift-vflip")
    np.testing.assert_array_equal(first(_view(plain, strong, 0)), images)
    np.testing.assert_array_equal(first(_view(plain, strong, 1)), images[:, :, ::-1])  # left-right
    np.testing.assert_array_equal(first(_view(plain, vflip, 1)), images[:, ::-1])  # upside down, as it trains
    assert not np.array_equal(first(_view(plain, Config(augment="light"), 1)), images[:, :, ::-1])
    assert [feature_views(Config(augment=a)) for a in ("strong", "shift-vflip", "light", "none")] == [2, 2, 1, 1]
    assert feature_views(Config(augment="strong", feature_views=3)) == 3  # yours stand
    assert feature_views(Config(augment="none", feature_views=3)) == 1  # no augmentation: one view only


def test_fine_tuning_stops_at_its_first_epoch_worse_than_the_best_so_far(tmp_path):
    from kit.callbacks import Checkpointer, EpochRecord, Interrupt, Progress, Watched
    from kit.config import Config

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")

    def stops_after(phase: str, score: float, patience: int = 0) -> bool:
        progress = Progress({"epoch": 1, "best": 0.9, "best_epoch": 1, "phase": phase})
        watched = Watched(tmp_path, Config(metric="accuracy", early_stopping=patience), model, (None, None),
                          Checkpointer(tmp_path, enabled=False), ["a", "b"])
        record = EpochRecord(progress, Interrupt(), watched)
        record.set_model(model)
        record.on_epoch_begin(1)
        record.on_epoch_end(1, {"loss": 0.1, "val_accuracy": score})
        return progress.stopped

    assert stops_after("fine_tune", 0.85)  # worse than the head it started from: stop
    assert not stops_after("fine_tune", 0.9)  # as good: go on
    assert not stops_after("fine_tune", 0.95)  # better: go on
    assert not stops_after("frozen", 0.85)  # kit's CNNs and the frozen phase train their epochs
    assert not stops_after("fine_tune", 0.85, patience=3)  # --early-stopping says otherwise


def test_photos_get_mirrored_views_and_the_submission_tries_the_mirror(tmp_path):
    import json

    data = tmp_path / "c"
    for split, count in (("train", 6), ("test", 3)):
        for c in ("cat", "dog"):
            folder = data / split / c if split == "train" else data / split
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(count):
                image = make_image(c, 10 * k + len(c), size=16, mode="RGB").resize((72, 72))
                image.save(folder / f"{c}{k}.jpg", quality=95)
    result = CliRunner().invoke(cli, ["run", str(data), "--model", "mobilenet_v3_small", "--weights", "none",
                                      "--image-size", "32", "--fine-tune-epochs", "0", "--batch-size", "8",
                                      "--metric", "auc", "--submission", "probability", "--positive", "dog",
                                      "--runs-dir", str(tmp_path / "runs"), "--name", "p"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    import pandas as pd

    head = pd.read_csv(tmp_path / "runs" / "p" / "history.csv").iloc[0]  # the head's epoch, scored by the metric
    metrics = json.loads((tmp_path / "runs" / "p" / "metrics.json").read_text())
    assert head["val_auc"] == pytest.approx(metrics["val_auc"], abs=1e-6)  # not shuffled against the labels
    config = json.loads((tmp_path / "runs" / "p" / "config.json").read_text())
    assert (config["augment"], config["feature_views"]) == ("strong", 2)  # photos (72 px): mirrors are photos
    assert "features of 9 images × 2 view(s)" in result.output
    assert "TTA (2 views) on " in result.output and "validation split: auc" in result.output
    assert len((tmp_path / "runs" / "p" / "submission.csv").read_text().splitlines()) == 7
    from kit.predict import predict_proba
    from kit.reports import read_val_predictions
    from kit.runs import Run
    from kit.submission import _views_of_validation

    run = Run.open(tmp_path / "runs" / "p")
    model, val = run.load_model(), read_val_predictions(run.path)
    both = predict_proba(model, val["path"], 32, 3, tta=2, augment="strong")  # the image and its mirror, predicted
    np.testing.assert_allclose(_views_of_validation(run, model, val, 2), both, atol=1e-5)  # the image's from the table
