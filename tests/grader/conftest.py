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
