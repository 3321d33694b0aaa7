"""Hardware set-up: GPU memory growth, mixed precision, and the tf.distribute strategy for one or many devices."""

from __future__ import annotations

import tensorflow as tf
import keras

from .errors import ConfigError


def configure_devices(config) -> None:
    """Memory growth on every GPU (share it politely); mixed float16 on GPUs that run it fast."""
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised in this process: the setting cannot change any more
            pass
    use_mixed = config.mixed_precision == "on" or (config.mixed_precision == "auto" and _fast_float16(gpus))
    keras.mixed_precision.set_global_policy("mixed_float16" if use_mixed else "float32")


def _fast_float16(gpus) -> bool:
    """Tensor cores arrived with compute capability 7.0; older GPUs run float16 slower than float32."""
    for gpu in gpus:
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0))
        if tuple(capability) < (7, 0):
            return False
    return bool(gpus)


def make_strategy(name: str) -> tf.distribute.Strategy:
    """auto: MirroredStrategy when there is more than one GPU, else the default (one device).

    Call before anything else touches TensorFlow: collective ops (multiworker) must be set up at start-up.
    """
    if name == "multiworker":  # reads TF_CONFIG: {"cluster": {"worker": [...]}, "task": {...}}
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
