"""GPU-side settings exercised on CPU: the mixed-precision decision, a float16 run, and an XLA-compiled run."""

import json
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from conftest import make_av_folder

import kit.accelerate
from kit.accelerate import _fast_float16, policy_name
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


@pytest.mark.parametrize("amx, setting, model, policy", [
    (False, "auto", "baseline", "float32"), (True, "auto", "baseline", "mixed_bfloat16"),
    (True, "auto", "small", "mixed_bfloat16"), (True, "auto", "mobilenet_v2", "float32"),
    (True, "off", "baseline", "float32"), (False, "on", "baseline", "mixed_float16")])
def test_without_a_gpu_auto_is_bfloat16_only_on_cpus_with_amx_and_for_models_from_scratch(
        monkeypatch, amx, setting, model, policy):
    monkeypatch.setattr(kit.accelerate, "_fast_bfloat16", lambda: amx)
    assert policy_name(setting, model) == policy


def test_the_cpu_flag_is_read_from_cpuinfo():
    from pathlib import Path

    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    assert kit.accelerate._fast_bfloat16() is (" amx_bf16" in flags)


def test_a_bfloat16_fit_leaves_the_callers_policy_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(kit.accelerate, "_fast_bfloat16", lambda: True)
    data = make_av_folder(tmp_path / "c", n_per_class=6)
    result = CliRunner().invoke(cli, ["run", str(data), "--epochs", "1", "--image-size", "16", "--runs-dir",
                                      str(tmp_path / "runs"), "--name", "bf"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "on CPU (bfloat16 arithmetic)" in result.output
    assert keras.mixed_precision.global_policy().name == "float32"  # set for the fit only
    model = keras.models.load_model(tmp_path / "runs" / "bf" / "model.keras", safe_mode=True, compile=False)
    compute = {layer.name: layer.dtype_policy.compute_dtype for layer in model.layers}
    assert compute["predictions"] == "float32" and "bfloat16" in compute.values()
    assert (tmp_path / "runs" / "bf" / "submission.csv").is_file()
    exported = CliRunner().invoke(cli, ["export", str(tmp_path / "runs" / "bf"), "--format", "tflite"])
    assert exported.exit_code == 0 and "agrees with kit on 100.00%" in exported.output, exported.output  # float32


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
