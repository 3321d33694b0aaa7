"""kit against what its users would otherwise run, on one competition folder, interleaved (#22, item 1).

Usage: python benchmarks/peers.py [--work DIR] [--limit 12000] [--epochs 10] [--rounds 1] [--plot PNG]

Each peer is a whole job in its own process — load the folder, train, predict the test images, write
submission.csv — timed from the process start; then `kit run DATA --time-budget T` runs with T = that peer's wall
time, so each row pair answers: given the same time, who scores more? Held-out accuracy is `kit score` against the
answers the export kept outside the folder. Peers:
- keras-io's "simple MNIST convnet" (Conv32-pool-Conv64-pool-dropout-dense, Adam, batch 128) on a tf.data
  pipeline reading the PNGs;
- the tutorials' script (Analytics Vidhya apparels): a load_img loop into arrays, then its 2-conv CNN;
- fastai's `vision_learner(resnet18, pretrained=False)` + `fit_one_cycle` when fastai is installed (it is an
  optional extra: pip install torch torchvision fastai, in another virtual environment if you like; the row says
  "skipped" without it).
The folder: Fashion-MNIST exported in the Analytics Vidhya layout (`kit datasets export fashion_mnist DIR --limit
N`: N training and N/5 test PNGs; needs ../shared/scripts/get-datasets.sh run once). Prints a table and writes an
accuracy-vs-time plot.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

KERAS_IO = '''
import sys, numpy as np, pandas as pd, tensorflow as tf, keras
from keras import layers
data, epochs, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
train, test = pd.read_csv(f"{data}/train.csv", dtype=str), pd.read_csv(f"{data}/test.csv", dtype=str)
def images(ids, folder):
    paths = tf.data.Dataset.from_tensor_slices([f"{data}/{folder}/{i}.png" for i in ids])
    return paths.map(lambda p: tf.cast(tf.io.decode_png(tf.io.read_file(p), 1), tf.float32) / 255.0,
                     num_parallel_calls=tf.data.AUTOTUNE)
labels = tf.data.Dataset.from_tensor_slices(keras.utils.to_categorical(train["label"].astype(int), 10))
ds = tf.data.Dataset.zip((images(train["id"], "train"), labels)).cache().shuffle(10000, seed=0).batch(128)
model = keras.Sequential([keras.Input(shape=(28, 28, 1)), layers.Conv2D(32, 3, activation="relu"),
    layers.MaxPooling2D(2), layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2), layers.Flatten(),
    layers.Dropout(0.5), layers.Dense(10, activation="softmax")])
model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
model.fit(ds.prefetch(tf.data.AUTOTUNE), epochs=epochs, verbose=2)
probs = model.predict(images(test["id"], "test").batch(256), verbose=0)
pd.DataFrame({"id": test["id"], "label": probs.argmax(1)}).to_csv(out, index=False)
'''

TUTORIAL = '''
import sys, numpy as np, pandas as pd, keras
from keras import layers
from keras.utils import load_img, img_to_array, to_categorical
from sklearn.model_selection import train_test_split
from tqdm import tqdm
data, epochs, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
train, test = pd.read_csv(f"{data}/train.csv", dtype=str), pd.read_csv(f"{data}/test.csv", dtype=str)
def load(ids, folder):
    return np.array([img_to_array(load_img(f"{data}/{folder}/{i}.png", target_size=(28, 28, 1),
                                           color_mode="grayscale")) / 255 for i in tqdm(ids)])
X, y = load(train["id"], "train"), to_categorical(train["label"].astype(int).values)
X_train, X_val, y_train, y_val = train_test_split(X, y, random_state=42, test_size=0.2)
model = keras.Sequential([keras.Input(shape=(28, 28, 1)), layers.Conv2D(32, (3, 3), activation="relu"),
    layers.Conv2D(64, (3, 3), activation="relu"), layers.MaxPooling2D((2, 2)), layers.Dropout(0.25),
    layers.Flatten(), layers.Dense(128, activation="relu"), layers.Dropout(0.5), layers.Dense(10, activation="softmax")])
model.compile(loss="categorical_crossentropy", optimizer="Adam", metrics=["accuracy"])
model.fit(X_train, y_train, epochs=epochs, validation_data=(X_val, y_val), verbose=2)
pd.DataFrame({"id": test["id"], "label": model.predict(load(test["id"], "test"), verbose=0).argmax(1)}).to_csv(
    out, index=False)
'''

FASTAI = '''
import sys, pandas as pd
from fastai.vision.all import ImageDataLoaders, resnet18, vision_learner, accuracy
data, epochs, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
train, test = pd.read_csv(f"{data}/train.csv", dtype=str), pd.read_csv(f"{data}/test.csv", dtype=str)
train["name"] = "train/" + train["id"] + ".png"
dls = ImageDataLoaders.from_df(train[["name", "label"]], data, valid_pct=0.2, seed=42, bs=64, num_workers=0)
learn = vision_learner(dls, resnet18, pretrained=False, metrics=accuracy)
learn.fit_one_cycle(epochs)
preds, _ = learn.get_preds(dl=dls.test_dl([f"{data}/test/{i}.png" for i in test["id"]]))
vocab = list(dls.vocab)
pd.DataFrame({"id": test["id"], "label": [vocab[i] for i in preds.argmax(1)]}).to_csv(out, index=False)
'''


def timed(command: list[str], env=None) -> float:
    started = time.time()
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
                                                                          **(env or {})})
    if result.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return time.time() - started


def score(submission: Path, answers: Path) -> float:
    out = subprocess.run([sys.executable, "-m", "kit", "score", str(submission), str(answers)], capture_output=True,
                         text=True, check=True).stdout
    return float(out.strip().split(": ")[1])


def prepare(work: Path, limit: int) -> tuple[Path, Path]:
    data, answers = work / "fashion", work / "answers.csv"
    if not data.exists():
        subprocess.run([sys.executable, "-m", "kit", "datasets", "export", "fashion_mnist", str(data), "--limit",
                        str(limit), "--answers", str(answers)], check=True)
    return data, answers


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/kit-bench-peers")
    parser.add_argument("--limit", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=10, help="the peers' epochs (kit gets their time instead)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--plot", default=str(Path(__file__).with_name("peers.png")))
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data, answers = prepare(work, args.limit)
    peers = {"keras-io convnet (tf.data)": KERAS_IO, "tutorials' load_img loop + CNN": TUTORIAL}
    if importlib.util.find_spec("fastai"):
        peers["fastai resnet18, pretrained=False"] = FASTAI
    else:
        print("fastai: skipped (not installed; pip install torch torchvision fastai)")
    rows = []
    for round_ in range(args.rounds):
        for k, (name, source) in enumerate(peers.items()):
            script, sub = work / f"peer{k}.py", work / f"peer{k}-r{round_}.csv"
            script.write_text(source)
            seconds = timed([sys.executable, str(script), str(data), str(args.epochs), str(sub)])
            rows.append((name, round_, seconds, score(sub, answers), ""))
            print(rows[-1], flush=True)
            name_kit = f"budget{k}-r{round_}"
            kit_seconds = timed([sys.executable, "-m", "kit", "run", str(data), "--runs-dir", str(work / "runs"),
                                 "--name", name_kit, "--force", "--time-budget", f"{seconds:.0f}"])
            rows.append((f"kit run --time-budget {seconds:.0f}s", round_, kit_seconds,
                         score(work / "runs" / name_kit / "submission.csv", answers), name))
            print(rows[-1], flush=True)
    print(f"\nFashion-MNIST, {args.limit} train / {args.limit // 5} test PNGs (AV layout), {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d')}; peers {args.epochs} epochs, kit given each peer's wall time")
    print("| contender | round | wall s | held-out accuracy | given the time of |\n|---|---|---|---|---|")
    for name, round_, seconds, accuracy, against in rows:
        print(f"| {name} | {round_ + 1} | {seconds:.0f} | {accuracy:.4f} | {against} |")
    plot(rows, args.plot)


def plot(rows, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name in dict.fromkeys(r[0].split(" --time-budget")[0] for r in rows):
        points = [(s, a) for n, _, s, a, _ in rows if n.split(" --time-budget")[0] == name]
        ax.plot(*zip(*sorted(points)), "o-" if name.startswith("kit") else "s", label=name)
    ax.set_xlabel("whole job, wall seconds (2 cores)")
    ax.set_ylabel("held-out accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
