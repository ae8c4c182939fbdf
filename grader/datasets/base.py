"""The HiddenSet type shared by every dataset loader, and small hashing helpers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class HiddenSet:
    """A hidden test set: inputs for the sandbox, labels for the trusted scorer."""

    name: str  # "phone-price/hidden.csv", "mnist/t10k", "embedded:..."
    sha256: str  # of the source file bytes, or of the generated arrays' bytes
    x: np.ndarray  # float32; phone-price (n, 20) raw features; mnist (n, 1, 28, 28) in [0, 1]
    y: np.ndarray  # int64 labels
    columns: list[str] | None  # phone-price feature names in order; None for mnist

    def __len__(self) -> int:
        return int(self.y.shape[0])


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def arrays_sha256(*arrays: np.ndarray) -> str:
    """Hex sha256 of arrays' raw bytes (C order, native little-endian dtypes), concatenated."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def frozen(array: np.ndarray) -> np.ndarray:
    """Mark an array read-only: loaded sets are cached and shared between gradings."""
    array.setflags(write=False)
    return array
