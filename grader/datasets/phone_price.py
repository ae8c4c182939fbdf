"""Phone-price (Kaggle "Mobile Price Classification") files: validation, loading and the course split."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from grader.datasets.base import HiddenSet, file_sha256, frozen

# The 20 features in the dataset's column order; the label column follows them.
PHONE_PRICE_COLUMNS: list[str] = [
    "battery_power",
    "blue",
    "clock_speed",
    "dual_sim",
    "fc",
    "four_g",
    "int_memory",
    "m_dep",
    "mobile_wt",
    "n_cores",
    "pc",
    "px_height",
    "px_width",
    "ram",
    "sc_h",
    "sc_w",
    "talk_time",
    "three_g",
    "touch_screen",
    "wifi",
]
LABEL_COLUMN = "price_range"
# pandas reads these two as float64 and every other column as int64 (data README).
FLOAT_COLUMNS: frozenset[str] = frozenset({"clock_speed", "m_dep"})
N_CLASSES = 4


def read_phone_price_csv(path: Path) -> pd.DataFrame:
    """Read and validate a phone-price CSV with labels; returns the 20 features + price_range in order."""
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable CSV ({exc})") from exc
    return validate_phone_price_frame(frame, source=str(path))


def validate_phone_price_frame(frame: pd.DataFrame, source: str = "data") -> pd.DataFrame:
    """Check schema, dtypes, NaNs and labels; raise ValueError naming the problem."""
    wanted = [*PHONE_PRICE_COLUMNS, LABEL_COLUMN]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{source}: missing column(s) {', '.join(missing)}; expected the Kaggle schema "
            f"({', '.join(wanted)})"
        )
    frame = frame[wanted]
    if len(frame) == 0:
        raise ValueError(f"{source}: no rows")
    for column in wanted:
        series = frame[column]
        if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            raise ValueError(f"{source}: column {column!r} is not numeric (dtype {series.dtype})")
        if series.isna().any():
            rows = [int(i) for i in np.flatnonzero(series.isna().to_numpy())[:5]]
            raise ValueError(f"{source}: column {column!r} has missing values (rows {rows}...)")
        values = series.to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValueError(f"{source}: column {column!r} has non-finite values")
        if column not in FLOAT_COLUMNS and not np.array_equal(values, np.round(values)):
            raise ValueError(f"{source}: column {column!r} must hold integers")
    labels = frame[LABEL_COLUMN].to_numpy(dtype=np.float64)
    bad = ~np.isin(labels, np.arange(N_CLASSES))
    if bad.any():
        found = sorted(set(labels[bad].tolist()))[:5]
        raise ValueError(f"{source}: {LABEL_COLUMN} must be 0..{N_CLASSES - 1}; found {found}")
    return frame


def frame_to_arrays(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Validated frame -> (x float32 (n, 20), y int64)."""
    # np.array copies: pandas (copy-on-write) may hand out read-only views.
    x = np.array(frame[PHONE_PRICE_COLUMNS].to_numpy(dtype=np.float32), order="C")
    y = np.array(frame[LABEL_COLUMN].to_numpy(dtype=np.int64), order="C")
    return x, y


def load_phone_price_file(path: Path, name: str) -> HiddenSet:
    """Load a labelled phone-price CSV (e.g. hidden.csv) as a HiddenSet."""
    x, y = frame_to_arrays(read_phone_price_csv(path))
    return HiddenSet(
        name=name, sha256=file_sha256(path), x=frozen(x), y=frozen(y), columns=list(PHONE_PRICE_COLUMNS)
    )


def check_split(frame: pd.DataFrame, holdout: float, stratify: bool) -> None:
    """Raise ValueError, naming the fix, where course_split could not split `frame` by `holdout`
    (scikit-learn's own error for a holdout of 0.0001 says "test_size=0 should be either positive")."""
    if not 0.0 < holdout < 1.0:  # NaN too
        raise ValueError(
            f"--holdout is the hidden set's share of the rows, between 0 and 1 (e.g. 0.2); got {holdout}"
        )
    rows = len(frame)
    hidden = math.ceil(rows * holdout)
    need = frame[LABEL_COLUMN].nunique() if stratify else 1
    if hidden < need or rows - hidden < need:
        raise ValueError(
            f"--holdout {holdout} of {rows} rows leaves {hidden} for the hidden set and {rows - hidden} for the "
            f"handout; each needs at least {need} (one per class when stratified). Use about 0.2."
        )
    if stratify:
        smallest = int(frame[LABEL_COLUMN].value_counts().min())
        if smallest < 2:
            raise ValueError(
                "a class has a single row, so a stratified split is impossible; add rows or pass --no-stratify"
            )


def course_split(
    frame: pd.DataFrame, holdout: float = 0.2, seed: int = 88, stratify: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The course's split: train_test_split(x, y, train_size=1-holdout, random_state=seed, stratify=y).

    Returns (handout, hidden) with rows in the order the split returns them. The split depends only
    on the row count, the labels and the seed, so splitting the whole frame equals the course's call.
    """
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must be in (0, 1), got {holdout}")
    y = frame[LABEL_COLUMN]
    handout, hidden = train_test_split(
        frame, train_size=1.0 - holdout, random_state=seed, stratify=y if stratify else None
    )
    return handout, hidden


def _write_csv(frame: pd.DataFrame, path: Path) -> dict[str, Any]:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, lineterminator="\n")
    counts = np.bincount(frame[LABEL_COLUMN].to_numpy(dtype=np.int64), minlength=N_CLASSES)
    return {
        "path": str(path),
        "rows": len(frame),
        "sha256": file_sha256(path),
        "class_counts": [int(c) for c in counts],
    }


def import_phone_price(
    train_csv: Path, out_dir: Path, holdout: float = 0.2, seed: int = 88, stratify: bool = True
) -> dict[str, Any]:
    """Split the course's train CSV into out_dir/phone-price/{handout,hidden}.csv; return a summary."""
    train_csv = Path(train_csv)
    frame = read_phone_price_csv(train_csv)
    handout, hidden = course_split(frame, holdout=holdout, seed=seed, stratify=stratify)
    target = Path(out_dir) / "phone-price"
    return {
        "kind": "phone-price",
        "source": str(train_csv),
        "source_sha256": file_sha256(train_csv),
        "source_rows": len(frame),
        "holdout": holdout,
        "seed": seed,
        "stratify": stratify,
        "split": f"train_test_split(x, y, train_size={1.0 - holdout:g}, random_state={seed}"
        + (", stratify=y)" if stratify else ")"),
        "handout": _write_csv(handout, target / "handout.csv"),
        "hidden": _write_csv(hidden, target / "hidden.csv"),
    }
