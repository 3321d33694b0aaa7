"""GPU-side settings exercised on CPU: the mixed-precision decision, a float16 run, and an XLA-compiled run."""

import json
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from conftest import make_av_folder

from kit.accelerate import _fast_float16, configure_devices
from kit.cli import cli


@pytest.fixture
def float32_after():
    yield
    keras.mixed_precision.set_global_policy("float32")  # configure_devices sets it process-wide


@pytest.mark.parametrize("capabilities, fast", [([(7, 0)], True), ([(8, 6), (9, 0)], True), ([(6, 1)], False),
                                                ([(8, 0), (6, 1)], False), ([], False)])
def test_float16_only_when_every_gpu_has_tensor_cores(monkeypatch, capabilities, fast):
    gpus = [SimpleNamespace(name=f"/physical_device:GPU:{i}") for i in range(len(capabilities))]
    details = {g.name: {"compute_capability": c} for g, c in zip(gpus, capabilities)}
    monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda gpu: details[gpu.name])
    assert _fast_float16(gpus) is fast


def test_auto_stays_float32_without_a_gpu(float32_after):
    configure_devices(SimpleNamespace(mixed_precision="auto"))
    assert keras.mixed_precision.global_policy().name == "float32"


def test_mixed_precision_on_trains_float16_with_a_float32_softmax(tmp_path, float32_after):
    data = make_av_folder(tmp_path / "c", n_per_class=6)
    result = CliRunner().invoke(cli, ["train", str(data), "--mixed-precision", "on", "--epochs", "1",
                                      "--image-size", "16", "--runs-dir", str(tmp_path / "runs"), "--name", "mp"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    keras.mixed_precision.set_global_policy("float32")
    model = keras.models.load_model(tmp_path / "runs" / "mp" / "model.keras", safe_mode=True, compile=False)
    compute = {layer.name: layer.dtype_policy.compute_dtype for layer in model.layers}
    assert compute["predictions"] == "float32" and "float16" in compute.values()
    probs = model.predict(np.zeros((2, 16, 16, 1), np.uint8), verbose=0)
    assert probs.dtype == np.float32 and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert np.isfinite(json.loads((tmp_path / "runs" / "mp" / "metrics.json").read_text())["val_loss"])


def test_jit_compiled_training_step_runs(tmp_path):
    data = make_av_folder(tmp_path / "c", n_per_class=6)
    result = CliRunner().invoke(cli, ["train", str(data), "--jit-compile", "--epochs", "1", "--image-size", "16",
                                      "--runs-dir", str(tmp_path / "runs"), "--name", "xla"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "runs" / "xla" / "config.json").read_text())["jit_compile"] is True
    assert (tmp_path / "runs" / "xla" / "model.keras").is_file()
