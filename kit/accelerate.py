"""Hardware set-up: GPU memory growth, mixed precision, and the tf.distribute strategy for one or many devices."""

from __future__ import annotations

import functools
import json
import os
from contextlib import contextmanager

from .errors import ConfigError
from .models import MODELS
from .quiet import keras
from .quiet import tensorflow as tf


def configure_devices(config) -> None:
    """Memory growth on every GPU (share it politely)."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised in this process: the setting cannot change any more
            pass


def policy_name(setting: str, model: str) -> str:
    """What --mixed-precision SETTING means for MODEL here: mixed float16 on GPUs with tensor cores ("on": on any
    device); mixed bfloat16 (float32 weights, bfloat16 arithmetic) for kit's models from scratch on CPUs that
    multiply bfloat16 in hardware (Intel AMX); float32 otherwise.

    bfloat16 on an AMX CPU, Fashion-MNIST 12,000 PNGs, 3 epochs (`kit run … --mixed-precision on|off` with bfloat16
    for "on" on CPU, 2 cores, 2026-11-30): simple_cnn 12-15 s of training against 22-26 s in float32, baseline
    31-35 s against 35-44 s, held-out accuracy 87.71% / 88.67% against 87.17% / 89.00% (within run-to-run noise).
    Backbones stay float32: their pretrained features are not measured in bfloat16."""
    if setting == "off":
        return "float32"
    gpus = tf.config.list_physical_devices("GPU")
    if setting == "on" or (gpus and _fast_float16(gpus)):
        return "mixed_float16"
    if not gpus and model in MODELS and _fast_bfloat16():
        return "mixed_bfloat16"
    return "float32"


@contextmanager
def precision(setting: str, model: str):
    """Keras' global dtype policy for one fit (policy_name), the caller's restored after it."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy_name(setting, model))
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


@functools.lru_cache(maxsize=None)
def _fast_bfloat16() -> bool:
    """Whether this CPU has AMX's bfloat16 matrix unit (Linux reports it as the cpuinfo flag amx_bf16): without it
    bfloat16 is emulated, and slower than float32. Read once: every fit (and its log line) asks."""
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " amx_bf16" in line for line in f)
    except OSError:
        return False


def device_description() -> str:
    """What kit trains on, in a few words: "CPU", or the GPUs by name."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    names = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
    return f"{len(gpus)} GPU{'s' if len(gpus) > 1 else ''} ({', '.join(sorted(set(names)))})"


def _fast_float16(gpus) -> bool:
    """Tensor cores arrived with compute capability 7.0; older GPUs run float16 slower than float32."""
    for gpu in gpus:
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0))
        if tuple(capability) < (7, 0):
            return False
    return bool(gpus)


@functools.lru_cache(maxsize=None)
def make_strategy(name: str) -> tf.distribute.Strategy:
    """auto: MirroredStrategy when there is more than one GPU, else the default (one device).

    Call before anything else touches TensorFlow: collective ops (multiworker) must be set up at start-up, once
    per process, so every fold of a k-fold run shares the one strategy made for the first.
    """
    if name == "multiworker":  # reads TF_CONFIG: {"cluster": {"worker": [...]}, "task": {...}}
        _let_keras_fit_on_many_workers()
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    if name == "none" or (name == "auto" and len(gpus) < 2):
        return tf.distribute.get_strategy()
    if name in ("auto", "mirrored"):
        if gpus:
            return tf.distribute.MirroredStrategy()
        cpus = tf.config.list_logical_devices("CPU")  # e.g. CPU split into logical devices for testing
        return tf.distribute.MirroredStrategy([d.name for d in cpus])
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.NotFoundError) as e:
            raise ConfigError(f"--strategy tpu: no TPU found ({str(e).splitlines()[0][:120]})") from None
        return tf.distribute.TPUStrategy(resolver)
    raise ConfigError(f"--strategy {name}: expected auto, mirrored, multiworker, tpu or none")


def _let_keras_fit_on_many_workers() -> None:
    """Mend the two places where Keras 3's TensorFlow trainer breaks under MultiWorkerMirroredStrategy (called
    once per process: make_strategy is cached).

    keras-team/keras#20585 (open at Keras 3.15): fit() first builds the model from one batch by strategy.reduce()
    of the whole (images, labels) tuple, which the collective strategy cannot take; and every step averages the
    metric scalars across workers with reduce(..., axis=0), which a scalar has no axis for. The mends: build from
    this worker's first local batch (only its shapes are used), and average scalars with axis=None. Training
    itself (strategy.run, gradient all-reduce, sharded input) stays Keras' and TensorFlow's. If a Keras release
    moves these internals (fixed upstream, one hopes), nothing is patched; tests/test_distributed.py will say.
    """
    try:
        from keras.src import tree
        from keras.src.backend.tensorflow import trainer
    except ImportError:
        return
    if not (hasattr(trainer, "_collective_all_reduce_multi_worker")
            and hasattr(trainer.TensorFlowTrainer, "_maybe_symbolic_build")):
        return
    reduce_per_replica = trainer.reduce_per_replica

    def reduce_scalars_across_workers(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return reduce_per_replica(values, strategy, reduction)

    def build_from_local_batch(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None:
            return
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tree.map_structure(
                    lambda v: self.distribute_strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues) else v, next(it))
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    trainer.reduce_per_replica = reduce_scalars_across_workers
    trainer.TensorFlowTrainer._maybe_symbolic_build = build_from_local_batch


def is_chief() -> bool:
    """Under MultiWorkerMirroredStrategy only the chief (worker 0) writes the run folder."""

    cluster = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = cluster.get("task", {})
    return task.get("type", "chief") == "chief" or (task.get("type") == "worker" and task.get("index", 0) == 0
                                                      and "chief" not in cluster.get("cluster", {}))
