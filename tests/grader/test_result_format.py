"""The result's way out of the sandbox: the harness's writer (grader/harness/main.py) against the
grader's reader (grader.sandbox.read_result), which must refuse, with a reason, anything malformed."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import pytest

from grader import sandbox
from tests.grader.harness_result import MAIN, written


def forged(entries: list[dict[str, Any]], body: bytes = b"", result: Any = None) -> bytes:
    """A result written by hand, as code in the sandbox could write one."""
    header = json.dumps({"result": result or {"ok": True}, "arrays": entries}).encode()
    return sandbox.RESULT_MAGIC + len(header).to_bytes(8, "little") + header + body


def test_the_reader_knows_the_harness_format() -> None:
    assert sandbox.RESULT_MAGIC == MAIN.RESULT_MAGIC


def test_the_progress_record_is_read_back_and_replaced_by_the_result(tmp_path: Any) -> None:
    # What out_fd holds until the result: the harness's own writer, then the reader.
    assert sandbox.PROGRESS_MAGIC == MAIN.PROGRESS_MAGIC
    fd = os.memfd_create("t")
    progress = MAIN._progress_writer(fd)
    progress(what="import", file="作业/model.py")
    progress(what="op", id="c3")  # shorter than the last: nothing of it is left behind
    data = os.pread(fd, 4096, 0)
    assert sandbox.read_progress(data) == {"what": "op", "id": "c3"}
    assert sandbox.read_result(data) == (None, {}, None)  # a stage is no result, and not a bad one
    os.close(fd)


@pytest.mark.parametrize(
    "data",
    [
        sandbox.PROGRESS_MAGIC + b'{"what": "op", "id": "c3"',  # cut short
        sandbox.PROGRESS_MAGIC + b'{"what": 3}',
        sandbox.PROGRESS_MAGIC + b'["import"]',
        sandbox.PROGRESS_MAGIC + b"\xff\xfe",
        sandbox.PROGRESS_MAGIC + b'{"id": "c3"}',  # no "what"
        sandbox.PROGRESS_MAGIC + b'{"what": "' + b"x" * 5000 + b'"}',
        b'{"what": "import"}',  # no magic
    ],
)
def test_a_forged_or_broken_progress_record_is_no_stage(data: bytes) -> None:
    assert sandbox.read_progress(data) is None


def test_a_progress_record_loses_control_characters_and_length() -> None:
    stage = sandbox.read_progress(
        sandbox.PROGRESS_MAGIC + json.dumps({"what": "import", "file": "a\x1b[31m\n" + "b" * 300}).encode()
    )
    assert stage is not None and stage["file"] == "a[31m" + "b" * 195


def test_arrays_and_result_come_back_exactly() -> None:
    rng = np.random.default_rng(0)
    arrays = {
        "pred": rng.standard_normal((1000, 10)).astype(np.float32),
        "labels": rng.integers(0, 10, 1000),
        "flags": rng.random(7) > 0.5,
        "half": np.arange(5, dtype=np.float16),
        "scalar": np.float64(2.5),
        "empty": np.zeros((0, 3)),
        "strided": np.arange(40.0).reshape(4, 10)[:, ::3],  # not contiguous
        "名字": np.uint8([1, 2, 3]),
    }
    info = {"timings": {"load_s": 0.01}, "note": "中文 ok", "nested": [1, {"a": None}]}
    result, out, bad = sandbox.read_result(written(arrays, {"ok": True, "error": None, "info": info}))
    assert bad is None
    assert result == {"ok": True, "error": None, "info": info}
    assert set(out) == set(arrays)
    for name, arr in arrays.items():
        np.testing.assert_array_equal(out[name], np.asarray(arr))
        assert out[name].dtype == np.asarray(arr).dtype and out[name].shape == np.shape(arr)
        assert not out[name].flags.writeable  # views of the bytes read, never of the sandbox's memfd


def test_a_failed_run_has_no_arrays_and_keeps_its_error() -> None:
    err = {"code": "crashed", "message": "boom", "message_zh": "崩溃"}
    result, out, bad = sandbox.read_result(written({}, {"ok": False, "error": err, "info": {}}))
    assert (result, out, bad) == ({"ok": False, "error": err, "info": {}}, {}, None)


def test_a_long_header_does_not_overlap_the_arrays() -> None:
    # The header's length moves the arrays' offsets, which the header holds.
    info = {"log": "x" * 5000, "many": list(range(300))}
    arrays = {f"a{i}": np.full(3, i, dtype=np.int32) for i in range(40)}
    result, out, bad = sandbox.read_result(written(arrays, {"ok": True, "info": info}))
    assert bad is None and result is not None and result["info"] == info
    assert all(out[f"a{i}"].tolist() == [i, i, i] for i in range(40))


def test_an_object_array_is_refused_by_name() -> None:
    result, out, bad = sandbox.read_result(written({"pred": np.array([1, "a", None], dtype=object)}))
    assert out == {} and bad is not None and "'pred'" in bad and "only numbers" in bad


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"PK\x03\x04 an npz, or anything else", "mark"),
        (sandbox.RESULT_MAGIC + (10**6).to_bytes(8, "little") + b"{}", "past its end"),
        (sandbox.RESULT_MAGIC + (4).to_bytes(8, "little") + b"{no}", "JSONDecodeError"),
        (forged([], result=[1, 2]), "not a JSON object"),
        (forged([{"name": "p", "dtype": "<f4", "shape": [2], "offset": 0, "nbytes": 8}]), "outside"),
        (forged([{"name": "p", "dtype": "<f4", "shape": [4], "offset": 10**9, "nbytes": 16}]), "outside"),
        (forged([{"name": "p", "dtype": "<f4", "shape": [9], "offset": 200, "nbytes": 8}]), "do not hold"),
        (forged([{"name": "p", "dtype": "<f4", "shape": [-2, -1], "offset": 200, "nbytes": 8}]), "malformed"),
        (forged([{"name": "p", "dtype": "<f4", "shape": [1] * 9, "offset": 200, "nbytes": 4}]), "malformed"),
        (forged([{"name": "p", "dtype": "<f4", "shape": "2", "offset": 200, "nbytes": 8}]), "malformed"),
        (forged([{"name": "p", "dtype": "no such", "shape": [2], "offset": 200, "nbytes": 8}]), "dtype"),
        (forged([{"name": "p", "dtype": "|O", "shape": [2], "offset": 200, "nbytes": 16}]), "only numbers"),
        (
            forged([{"name": "p", "dtype": "<M8[s]", "shape": [1], "offset": 200, "nbytes": 8}]),
            "only numbers",
        ),
        (forged([{"name": 3, "dtype": "<f4", "shape": [1], "offset": 200, "nbytes": 4}]), "not a string"),
        (forged([{"name": "p"}] * 65), "at most 64"),
    ],
)
def test_a_malformed_result_is_refused_with_a_reason(data: bytes, needle: str) -> None:
    result, out, bad = sandbox.read_result(data)
    assert out == {}
    assert bad is not None and needle in bad, bad


def test_nothing_written_is_no_result_not_a_bad_one() -> None:
    assert sandbox.read_result(b"") == (None, {}, None)


def test_a_result_header_over_the_cap_is_refused_before_it_is_parsed() -> None:
    # The JSON header is parsed in the trusted worker; a real one is a few KB.
    at_cap = forged([], result={"ok": True, "info": {"pad": ""}})
    pad = sandbox.RESULT_MAX_HEADER_BYTES - (len(at_cap) - len(sandbox.RESULT_MAGIC) - 8)
    result, _, bad = sandbox.read_result(forged([], result={"ok": True, "info": {"pad": "x" * pad}}))
    assert bad is None and result is not None and len(result["info"]["pad"]) == pad
    result, arrays, bad = sandbox.read_result(
        forged([], result={"ok": True, "info": {"pad": "x" * (pad + 1)}})
    )
    assert result is None and arrays == {}
    assert bad is not None and f"(at most {sandbox.RESULT_MAX_HEADER_BYTES})" in bad
