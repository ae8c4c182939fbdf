"""Builders for submission zips used across the grader tests."""

from __future__ import annotations

import textwrap
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[2]

PHONE_MODEL = """
import torch
from torch import nn


class PhonePriceModel(nn.Module):
    def __init__(self, input_dim, output_dim):
        super().__init__()
        self.linear1 = nn.Linear(input_dim, 16)
        self.linear2 = nn.Linear(16, output_dim)

    def forward(self, x):
        return self.linear2(torch.relu(self.linear1(x)))
"""


class _PhoneNet(nn.Module):
    def __init__(self, input_dim: int = 20, output_dim: int = 4) -> None:
        super().__init__()
        self.linear1 = nn.Linear(input_dim, 16)
        self.linear2 = nn.Linear(16, output_dim)


def phone_state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return _PhoneNet().state_dict()


def write_zip(path: Path, files: dict[str, bytes | str]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data.encode("utf-8") if isinstance(data, str) else data)
    return path


def weights_bytes(obj: object, tmp: Path) -> bytes:
    p = tmp / "w.tmp"
    torch.save(obj, p)
    data = p.read_bytes()
    p.unlink()
    return data


@pytest.fixture
def phone_zip(tmp_path: Path) -> Callable[..., Path]:
    """phone_zip(top="code run at import", forward="extra code at the start of forward()", extra={...})."""

    def make(
        top: str = "", forward: str = "", extra: dict[str, bytes | str] | None = None, name: str = "hw.zip"
    ) -> Path:
        src = PHONE_MODEL
        if forward:
            body = textwrap.indent(textwrap.dedent(forward), " " * 8)
            src = src.replace("    def forward(self, x):\n", "    def forward(self, x):\n" + body + "\n")
        if top:
            src = src + "\n" + textwrap.dedent(top)
        files: dict[str, bytes | str] = {
            "model.py": src,
            "phone-price-model.bin": weights_bytes(phone_state_dict(), tmp_path),
        }
        files.update(extra or {})
        return write_zip(tmp_path / name, files)

    return make


def shared_data_path() -> Path | None:
    """The real datasets (../shared/data beside the checkout, or HWGRADE_SHARED_DATA)."""
    import os

    env = os.environ.get("HWGRADE_SHARED_DATA")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    return path if (path / "phone-price" / "train.csv").is_file() else None


@pytest.fixture(scope="session")
def course_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HWGRADE_DATA_DIR built from the real files as an instructor would: the course's phone-price
    split (`hwgrade datasets import`) and MNIST's t10k set."""
    from grader.datasets import import_mnist, import_phone_price

    shared = shared_data_path()
    if shared is None:
        pytest.skip("real datasets not found (../shared/data or HWGRADE_SHARED_DATA)")
    out = tmp_path_factory.mktemp("course-data")
    import_phone_price(shared / "phone-price" / "train.csv", out, holdout=0.2, seed=88, stratify=True)
    import_mnist(shared / "mnist", out)
    return out
