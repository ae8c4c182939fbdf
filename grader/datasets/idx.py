"""A NumPy-only reader for the IDX format MNIST ships in (gzipped or raw)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

# IDX type codes (third byte of the magic number) -> big-endian dtype.
_IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
_GZIP_MAGIC = b"\x1f\x8b"
# Far above MNIST's 47 MB train images: a bound against a gzip bomb named *.gz.
MAX_IDX_BYTES = 512 * 1024 * 1024


def _read_bytes(path: Path, max_bytes: int) -> bytes:
    with open(path, "rb") as fh:
        head = fh.read(2)
        fh.seek(0)
        if head == _GZIP_MAGIC:
            with gzip.GzipFile(fileobj=fh) as gz:
                try:
                    data = gz.read(max_bytes + 1)
                except (OSError, EOFError, gzip.BadGzipFile) as exc:
                    raise ValueError(f"{path}: corrupt gzip stream ({exc})") from exc
        else:
            data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"{path}: more than {max_bytes} bytes of IDX data")
    return data


def read_idx(path: Path, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a native-endian array, validating magic and size."""
    path = Path(path)
    data = _read_bytes(path, max_bytes)
    if len(data) < 4:
        raise ValueError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    zero1, zero2, type_code, ndim = data[0], data[1], data[2], data[3]
    magic = int.from_bytes(data[:4], "big")
    if zero1 != 0 or zero2 != 0 or type_code not in _IDX_DTYPES or not 1 <= ndim <= 4:
        raise ValueError(f"{path}: bad IDX magic number {magic} (0x{magic:08x}); is this an IDX file?")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header (need {header} bytes, have {len(data)})")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(
            f"{path}: IDX size mismatch: header says shape {shape} of {dtype.name} "
            f"({expected} bytes with header), file has {len(data)} bytes"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)
