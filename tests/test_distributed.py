"""tf.distribute on CPU: MirroredStrategy over two logical CPU devices, and two MultiWorkerMirroredStrategy
workers on 127.0.0.1 that must end with identical weights."""

import json
import os
import socket
import subprocess
import sys
import textwrap

from conftest import make_av_folder

# Run kit's CLI in a fresh process after splitting the CPU into two logical devices (must precede TF start-up).
MIRRORED = textwrap.dedent("""
    import sys, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from kit.cli import cli
    cli(sys.argv[1:])
""")


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")


def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    data = make_av_folder(tmp_path / "c", n_per_class=10)
    proc = subprocess.run([sys.executable, "-c", MIRRORED, "train", str(data), "--strategy", "mirrored",
                           "--epochs", "2", "--batch-size", "4", "--image-size", "16", "--runs-dir",
                           str(tmp_path / "runs"), "--name", "m"], capture_output=True, text=True, env=_env(),
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "2 replicas (MirroredStrategy)" in proc.stderr  # progress: stderr; results: stdout
    assert json.loads((tmp_path / "runs" / "m" / "metrics.json").read_text())["epochs_run"] == 2


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


# Every model file given, one weights vector each into OUT.npz: one process, as starting TensorFlow takes seconds.
DUMP_WEIGHTS = textwrap.dedent("""
    import sys, numpy as np, keras
    models = [keras.models.load_model(path, safe_mode=True, compile=False) for path in sys.argv[2:]]
    np.savez(sys.argv[1], *[np.concatenate([w.reshape(-1) for w in m.get_weights()]) for m in models])
""")


def _launch_workers(tmp_path, data, *flags):
    """Two `kit train --strategy multiworker` processes on 127.0.0.1; worker 1 writes into tmp_path/worker1."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    procs = []
    for index in range(2):
        env = _env()
        env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        env["KIT_WORKER_DIR"] = str(tmp_path / f"worker{index}")
        procs.append(subprocess.Popen([sys.executable, "-m", "kit.cli", "train", str(data), "--strategy",
                                       "multiworker", "--batch-size", "4", "--image-size", "16", "--runs-dir",
                                       str(tmp_path / "runs"), "--name", "w", *flags],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    return procs


def test_multiworker_two_processes_agree_across_folds(tmp_path):
    """A 2-fold run on two workers: the strategy is made once per process and serves both folds, worker 0 writes
    the run, and both workers end every fold with bit-identical weights (BatchNorm statistics included)."""
    data = make_av_folder(tmp_path / "c", n_per_class=10)
    procs = _launch_workers(tmp_path, data, "--epochs", "2", "--folds", "2", "--augment", "none")
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, out + err[-3000:]
    assert "2 replicas (CollectiveAllReduceStrategy)" in outputs[0][1]  # progress is on stderr
    assert "Worker done after 4 epoch(s)" in outputs[1][0]
    assert json.loads((tmp_path / "runs" / "w" / "metrics.json").read_text())["epochs_run"] == 4
    assert not (tmp_path / "worker0").exists()  # the chief writes the real run folder only
    import numpy as np

    models = [str(root / fold / "model.keras") for fold in ("fold0", "fold1")
              for root in (tmp_path / "runs" / "w", tmp_path / "worker1")]
    subprocess.run([sys.executable, "-c", DUMP_WEIGHTS, str(tmp_path / "weights.npz"), *models], check=True,
                   env=_env(), capture_output=True)
    weights = list(np.load(tmp_path / "weights.npz").values())  # fold0 on each worker, then fold1
    assert len(weights) == 4
    np.testing.assert_array_equal(weights[0], weights[1], err_msg="fold0")
    np.testing.assert_array_equal(weights[2], weights[3], err_msg="fold1")
