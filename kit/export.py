"""Export a run's model (SavedModel, TFLite, ONNX) and check the export predicts what kit predicts."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ConfigError, RunError
from .outputs import check_output, record_written, remove_output
from .pipeline import load_images
from .reports import read_val_predictions
from .runs import EXPORT_DIR, Run
from .submission import ensemble_weights

FORMATS = ("savedmodel", "tflite", "onnx")


@dataclass
class ExportResult:
    path: Path
    format: str
    checked: int  # validation images compared
    agreement: float  # share of them with the same predicted class
    max_abs_diff: float  # largest probability difference


def export_run(run_dirs, fmt: str, output=None, force: bool = False, check_images: int = 500,
               trusted=(), weights=None) -> ExportResult:
    """Export one run's model — or, for a k-fold run or several runs, one model averaging the members'
    probabilities (weighted as kit make-submission weighs them) — and check the export predicts what kit predicts
    on up to `check_images` validation images."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    runs = [Run.open(r, trusted) for r in ([run_dirs] if isinstance(run_dirs, (str, Path)) else run_dirs)]
    first = runs[0]
    for run in runs[1:]:
        if (run.image_size, run.channels, run.class_names) != (first.image_size, first.channels, first.class_names):
            raise RunError(f"{run.path}: its image size, channels or classes differ from {first.path}'s; an "
                           "exported ensemble needs them equal")
    members = []
    for run, weight in zip(runs, ensemble_weights(runs, weights)):
        folds = run.members()
        # TFLite and ONNX take no bfloat16: their exports (and what they are checked against) are float32
        members += [(weight / len(folds), fold.load_model() if fmt == "savedmodel" else float32(fold.load_model()))
                    for fold in folds]
    suffix = {"savedmodel": "savedmodel", "tflite": "model.tflite", "onnx": "model.onnx"}[fmt]
    out = check_output(Path(output) if output else first.path / EXPORT_DIR / suffix, "--output", force,
                       {r.config.data for r in runs}, folder=fmt == "savedmodel")
    out.parent.mkdir(parents=True, exist_ok=True)
    images = _validation_images(first, check_images)
    expected = sum(w * np.asarray(m.predict(images, verbose=0), dtype=np.float64) for w, m in members) \
        if len(images) else np.zeros((0, len(first.class_names)))
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=".export."))
    try:
        produced = _convert(averaged(members, first), fmt, staging, first)
        got = _run_export(fmt, produced, images)
        remove_output(out)
        produced.rename(out)
        record_written(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    agreement = float((expected.argmax(1) == got.argmax(1)).mean()) if len(images) else 1.0
    return ExportResult(out, fmt, len(images), agreement, float(np.abs(expected - got).max()) if len(images) else 0.0)


def float32(model):
    """The model in float32 arithmetic, what TFLite, ONNX and TensorFlow Serving take: a model kit trained in
    bfloat16 (kit.accelerate.policy_name) is rebuilt with float32 layers around the same (float32) weights."""
    from .quiet import keras

    if all(layer.dtype_policy.compute_dtype == "float32" for layer in model.layers
           if not isinstance(layer, keras.layers.InputLayer)):
        return model
    config = model.get_config()
    for layer in config["layers"]:
        if layer["class_name"] != "InputLayer":
            layer["config"]["dtype"] = "float32"
    rebuilt = keras.Model.from_config(config)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def averaged(members: list, run: Run):
    """One Keras model of uint8 images → the weighted mean of the members' probabilities (itself for one)."""
    from .quiet import keras

    if len(members) == 1:
        return members[0][1]
    inputs = keras.Input((run.image_size, run.image_size, run.channels), dtype="uint8", name="image")
    outputs = []
    for k, (weight, model) in enumerate(members):
        member = keras.Model(model.inputs[0], model.outputs[0], name=f"member{k}")  # unique names when nested
        outputs.append(keras.layers.Rescaling(weight, name=f"weight{k}")(member(inputs)))
    return keras.Model(inputs, keras.layers.Add(name="mean")(outputs), name="ensemble")


def _convert(model, fmt: str, staging: Path, run: Run) -> Path:
    from .quiet import tensorflow as tf

    saved = staging / "savedmodel"
    model.export(str(saved), format="tf_saved_model", verbose=False)
    if fmt == "savedmodel":
        return saved
    if fmt == "tflite":
        produced = staging / "model.tflite"
        produced.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(saved)).convert())
        return produced
    try:
        import tf2onnx
    except ImportError:
        raise ConfigError("--format onnx needs tf2onnx: pip install 'kit[onnx]' (or pip install tf2onnx)") from None
    produced = staging / "model.onnx"
    spec = (tf.TensorSpec((None, run.image_size, run.image_size, run.channels), tf.uint8, name="image"),)
    tf2onnx.convert.from_keras(model, input_signature=spec, output_path=str(produced))
    return produced


def _validation_images(run: Run, limit: int) -> np.ndarray:
    paths = [p for p in read_val_predictions(run.path)["path"] if Path(p).is_file()][:limit]
    return load_images(paths, run.image_size, run.channels)


def _run_export(fmt: str, path: Path, images: np.ndarray) -> np.ndarray:
    from .quiet import tensorflow as tf

    if fmt == "savedmodel":
        serve = tf.saved_model.load(str(path)).signatures["serving_default"]
        outputs = [list(serve(tf.constant(images[i: i + 256])).values())[0].numpy() for i in range(0, len(images), 256)]
        return np.concatenate(outputs) if outputs else np.zeros((0, 0))
    if fmt == "tflite":
        interpreter = tf.lite.Interpreter(model_path=str(path))
        inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        results = []
        for image in images:  # one at a time: the converted model has a fixed batch of 1
            interpreter.resize_tensor_input(inp["index"], (1, *image.shape))
            interpreter.allocate_tensors()
            interpreter.set_tensor(inp["index"], image[None].astype(inp["dtype"]))
            interpreter.invoke()
            results.append(interpreter.get_tensor(out["index"])[0])
        return np.asarray(results, dtype=np.float64)
    import onnxruntime as ort

    session = ort.InferenceSession(str(path))
    return np.asarray(session.run(None, {session.get_inputs()[0].name: images})[0], dtype=np.float64)
