"""Tests for grader.intake: safe unpacking of student zips."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import random
import shutil
import stat
import struct
import subprocess
import tarfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from grader import intake
from grader.intake import IntakeLimits, Unpacked, sniff_archive_kind, unpack
from grader.report import ErrorCode, GradeError

REPACK_HINTS = ("zip -r", "Send to", "Compressed (zipped) folder")


# --- building zips -----------------------------------------------------------------------------------


def make_zip(path: Path, files: dict[str, bytes | str]) -> Path:
    """An ordinary zip as Python's zipfile writes it (UTF-8 flag set for non-ASCII names)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


@dataclass
class Raw:
    """One hand-made entry: exact name bytes, flags, attributes and a declared size that may lie."""

    name: bytes
    data: bytes = b""
    deflate: bool = True
    flags: int = 0
    external_attr: int = 0o100644 << 16
    create_system: int = 3
    method: int | None = None  # overrides the compression method written in the headers
    file_size: int | None = None  # declared uncompressed size; len(data) if None
    extra: bytes = b""


def craft_zip(path: Path, entries: list[Raw]) -> Path:
    """Write a zip byte by byte, so that headers can say things zipfile would never write."""
    out = bytearray()
    central = bytearray()
    for e in entries:
        if e.deflate:
            comp = zlib.compressobj(6, zlib.DEFLATED, -15)
            payload = comp.compress(e.data) + comp.flush()
        else:
            payload = e.data
        method = e.method if e.method is not None else (8 if e.deflate else 0)
        size = len(e.data) if e.file_size is None else e.file_size
        crc = zlib.crc32(e.data)
        offset = len(out)
        out += struct.pack(
            "<4s5H3L2H", b"PK\x03\x04", 20, e.flags, method, 0, 0x21, crc, len(payload), size, len(e.name),
            len(e.extra),
        )  # fmt: skip
        out += e.name + e.extra + payload
        central += struct.pack(
            "<4s6H3L5H2L", b"PK\x01\x02", (e.create_system << 8) | 20, 20, e.flags, method, 0, 0x21, crc,
            len(payload), size, len(e.name), len(e.extra), 0, 0, 0, e.external_attr, offset,
        )  # fmt: skip
        central += e.name + e.extra
    n = len(entries)
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n, n, len(central), len(out), 0)
    path.write_bytes(bytes(out + central + eocd))
    return path


def deflate_zeros(n: int) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = bytes(1024 * 1024)
    parts = [comp.compress(block) for _ in range(n // len(block))]
    return b"".join(parts) + comp.compress(bytes(n % len(block))) + comp.flush()


def reject(zip_path: Path, dest: Path, code: ErrorCode, limits: IntakeLimits | None = None) -> GradeError:
    with pytest.raises(GradeError) as info:
        unpack(zip_path, dest, limits)
    err = info.value
    assert err.code == code, (err.code, err.message)
    assert err.message and err.message_zh
    assert err.message != err.message_zh
    return err


def assert_says_repack(err: GradeError) -> None:
    assert all(hint in err.message for hint in REPACK_HINTS), err.message
    assert "zip -r" in err.message_zh and "发送到" in err.message_zh, err.message_zh


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "out"


# --- happy paths -------------------------------------------------------------------------------------


def test_files_at_root(tmp_path: Path, dest: Path) -> None:
    z = make_zip(tmp_path / "hw.zip", {"model.py": "x = 1\n", "model/w.bin": b"\x00\x01", "notes.md": "hi"})
    got = unpack(z, dest)
    assert isinstance(got, Unpacked)
    assert got.root == dest
    assert got.top_folder is None
    assert got.files == ["model.py", "model/w.bin", "notes.md"]
    assert got.attachments == ["notes.md"]
    assert (dest / "model.py").read_text() == "x = 1\n"
    assert (dest / "model" / "w.bin").read_bytes() == b"\x00\x01"


def test_single_top_folder_is_looked_through(tmp_path: Path, dest: Path) -> None:
    z = make_zip(tmp_path / "hw.zip", {"hw3/": b"", "hw3/model.py": "pass\n", "hw3/data/train.csv": "a,b\n"})
    got = unpack(z, dest)
    assert got.top_folder == "hw3"
    assert got.root == dest / "hw3"
    assert got.files == ["data/train.csv", "model.py"]
    assert (got.root / "model.py").is_file()


def test_a_folder_in_a_folder_and_a_readme_beside_are_looked_through(tmp_path: Path, dest: Path) -> None:
    """Windows' "Extract All" and zipping the result gives hw/hw/; a README beside the folder is
    common too. homework.toml in there was read from nowhere: the zip was graded by the conventions,
    silently (a wrong score, and a hint to add the homework.toml it had)."""
    z = make_zip(
        tmp_path / "hw.zip",
        {"README.md": "hi", "hw/hw/homework.toml": "[model]\n", "hw/hw/model.py": "", "hw/notes.txt": "x"},
    )
    got = unpack(z, dest)
    assert got.top_folder == "hw/hw" and got.root == dest / "hw" / "hw"
    assert got.files == ["homework.toml", "model.py"]
    assert got.attachments == ["README.md", "hw/notes.txt"]
    # A file the grader uses beside the folder stops the look-through there.
    z = make_zip(tmp_path / "code.zip", {"train.py": "", "hw/model.py": ""})
    assert unpack(z, tmp_path / "code").top_folder is None


def test_two_top_folders_are_not_looked_through(tmp_path: Path, dest: Path) -> None:
    z = make_zip(tmp_path / "hw.zip", {"a/model.py": "", "b/other.py": ""})
    got = unpack(z, dest)
    assert got.top_folder is None
    assert got.files == ["a/model.py", "b/other.py"]


def test_single_file_at_root_is_not_a_folder(tmp_path: Path, dest: Path) -> None:
    got = unpack(make_zip(tmp_path / "hw.zip", {"activations.py": "pass\n"}), dest)
    assert got.top_folder is None
    assert got.files == ["activations.py"]


def test_junk_is_not_extracted(tmp_path: Path, dest: Path) -> None:
    z = make_zip(
        tmp_path / "hw.zip",
        {
            "hw/model.py": "",
            "hw/.DS_Store": b"\x00",
            "hw/__pycache__/model.cpython-311.pyc": b"\x00",
            "hw/old.pyc": b"\x00",
            "hw/Thumbs.db": b"\x00",
            "hw/._model.py": b"\x00",
            "__MACOSX/hw/._model.py": b"\x00",
            "__MACOSX/._hw": b"\x00",
        },
    )
    got = unpack(z, dest)
    # __MACOSX would otherwise be a second top-level folder and defeat the look-through.
    assert got.top_folder == "hw"
    assert got.files == ["model.py"]
    assert tree(dest) == ["hw", "hw/model.py"]


LONG_CODE_NAMES = {
    "long_component": ("a" * 256 + ".py", "has 259 bytes"),
    "long_chinese_component": ("作业/" + "反向传播" * 22 + ".py", "has 267 bytes"),
    "long_path": ("/".join(["d" * 200] * 6) + "/x.py", "whole path has 1210 bytes"),
    "long_folder": ("作业" * 50 + "/model.py", "has 300 bytes"),
}


@pytest.mark.parametrize("case", sorted(LONG_CODE_NAMES))
def test_a_file_the_grader_may_use_with_a_name_too_long_to_unpack_says_rename_it(
    case: str, tmp_path: Path
) -> None:
    # Linux holds 255 bytes a name (about 85 Chinese characters in UTF-8) and the grader 1024 a path;
    # Windows and macOS allow longer. The fix is a shorter name, not "re-pack as a zip".
    name, says = LONG_CODE_NAMES[case]
    work = tmp_path / "work"
    work.mkdir()
    z = craft_zip(tmp_path / "hw.zip", [Raw(b"ok.py", b"pass\n"), Raw(name.encode(), b"boom")])
    err = reject(z, work / "out", ErrorCode.unsafe_archive)
    assert says in err.message and "shorter name" in err.message, err.message
    assert "改一个短一些的名字" in err.message_zh and "re-pack" not in err.message
    assert disk_bytes(work) == 0


def test_an_attachment_with_a_name_too_long_to_unpack_is_listed_and_left_in_the_zip(
    tmp_path: Path, dest: Path
) -> None:
    # A photo of a derivation named in a sentence of Chinese (274 bytes in UTF-8) is fine on Windows:
    # the submission is graded, the photo stays in the stored zip for the instructor, and is listed.
    photo = "反向传播手写推导过程" * 9 + ".jpg"
    folder = "第二次作业的手写推导照片和说明文档" * 6  # 306 bytes: a folder of attachments only
    z = make_zip(
        tmp_path / "hw.zip",
        {"作业/activations.py": "pass\n", f"作业/{photo}": b"\xff\xd8\xff", f"作业/{folder}/1.png": b"png"},
    )
    got = unpack(z, dest)
    assert got.top_folder == "作业"
    assert got.files == ["activations.py"]
    assert got.attachments == sorted([photo, f"{folder}/1.png"])
    assert sorted(p.name for p in (dest / "作业").iterdir()) == ["activations.py"]


def test_attachments_classified(tmp_path: Path, dest: Path) -> None:
    names = [
        "model.py", "homework.toml", "w.pt", "w.pth", "w.bin", "w.ckpt", "w.safetensors", "scaler.pkl",
        "s.joblib", "x.npy", "x.npz", "train.csv", "cfg.json",
        "hw.ipynb", "README.md", "notes.txt", "proof.png", "proof.JPG", "p.jpeg", "r.pdf", "r.docx",
        "r.doc", "IMG_1.HEIC", "old.zip", "old.rar", "old.7z", "old.tar", "old.tar.gz", "LICENSE",
    ]  # fmt: skip
    got = unpack(make_zip(tmp_path / "hw.zip", dict.fromkeys(names, b"x")), dest)
    assert got.files == sorted(names)
    assert got.attachments == sorted(names[13:])
    # Attachments are still there for the instructor, nested archives as plain files.
    assert (dest / "old.zip").read_bytes() == b"x"


def test_utf8_chinese_names(tmp_path: Path, dest: Path) -> None:
    z = make_zip(tmp_path / "hw.zip", {"作业/模型.py": "pass\n", "作业/说明.txt": "好"})
    assert zipfile.ZipFile(z).infolist()[0].flag_bits & 0x800
    got = unpack(z, dest)
    assert got.top_folder == "作业"
    assert got.files == ["模型.py", "说明.txt"]
    assert (dest / "作业" / "模型.py").read_text() == "pass\n"


def test_utf8_names_without_flag(tmp_path: Path, dest: Path) -> None:
    z = craft_zip(tmp_path / "hw.zip", [Raw("作业/模型.py".encode(), b"pass\n")])
    assert unpack(z, dest).files == ["模型.py"]
    assert (dest / "作业" / "模型.py").read_bytes() == b"pass\n"


def test_gbk_names_without_flag(tmp_path: Path, dest: Path) -> None:
    z = craft_zip(
        tmp_path / "hw.zip",
        [
            Raw("作业/".encode("gbk"), external_attr=0o40755 << 16),
            Raw("作业/模型.py".encode("gbk"), b"pass\n"),
        ],
    )
    # What Python alone makes of it: cp437 mojibake.
    assert zipfile.ZipFile(z).namelist()[1] != "作业/模型.py"
    got = unpack(z, dest)
    assert got.top_folder == "作业"
    assert got.files == ["模型.py"]
    assert (dest / "作业" / "模型.py").read_bytes() == b"pass\n"


def test_gbk_names_written_through_zipfile(tmp_path: Path, dest: Path) -> None:
    # The recipe from the brief: the GBK bytes smuggled into ZipInfo as cp437 text. zipfile writes
    # non-ASCII names as UTF-8, so the name is written as ASCII placeholders and patched afterwards.
    raw = "数据/手机.csv".encode("gbk")
    placeholder = b"Q" * len(raw)
    z = make_zip(tmp_path / "hw.zip", {placeholder.decode(): "a,b\n"})
    data = z.read_bytes()
    assert data.count(placeholder) == 2  # local and central header
    z.write_bytes(data.replace(placeholder, raw))
    info = zipfile.ZipFile(z).infolist()[0]
    assert info.flag_bits & 0x800 == 0
    assert unpack(z, dest).files == ["手机.csv"]


def test_unicode_path_extra_field(tmp_path: Path, dest: Path) -> None:
    # WinRAR-style: a legacy-encoded name plus the Info-ZIP Unicode Path field carrying UTF-8.
    legacy = "模型.py".encode("gbk")
    utf8 = "模型.py".encode()
    field = struct.pack("<BL", 1, zlib.crc32(legacy)) + utf8
    extra = struct.pack("<HH", 0x7075, len(field)) + field
    z = craft_zip(tmp_path / "hw.zip", [Raw(legacy, b"pass\n", extra=extra)])
    assert unpack(z, dest).files == ["模型.py"]


def test_backslash_separators(tmp_path: Path, dest: Path) -> None:
    z = craft_zip(tmp_path / "hw.zip", [Raw(b"hw\\model.py", b"pass\n")])
    got = unpack(z, dest)
    assert got.top_folder == "hw"
    assert (dest / "hw" / "model.py").is_file()


def test_dos_attributes_from_windows_tools(tmp_path: Path, dest: Path) -> None:
    # Windows tools: create_system 0, DOS attribute bytes instead of a Unix mode.
    z = craft_zip(
        tmp_path / "hw.zip",
        [
            Raw(b"hw/", external_attr=0x10, create_system=0),
            Raw(b"hw/model.py", b"pass\n", external_attr=0x20, create_system=0),
        ],
    )
    got = unpack(z, dest)
    assert (got.top_folder, got.files) == ("hw", ["model.py"])


@pytest.mark.skipif(shutil.which("zip") is None, reason="Info-ZIP zip not installed")
def test_info_zip_cli(tmp_path: Path, dest: Path) -> None:
    src = tmp_path / "作业"
    (src / "model").mkdir(parents=True)
    (src / "模型.py").write_text("pass\n")
    (src / "model" / "w.bin").write_bytes(b"\x00" * 10)
    subprocess.run(["zip", "-qr", "hw.zip", "作业"], cwd=tmp_path, check=True)
    got = unpack(tmp_path / "hw.zip", dest)
    assert (got.top_folder, got.files) == ("作业", ["model/w.bin", "模型.py"])


def test_zip_with_comment(tmp_path: Path, dest: Path) -> None:
    z = tmp_path / "hw.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("a.py", "pass\n")
        zf.comment = "张三的作业 PK".encode()
    assert unpack(z, dest).files == ["a.py"]


def test_permissions_ignore_umask(tmp_path: Path, dest: Path) -> None:
    z = craft_zip(
        tmp_path / "hw.zip",
        [Raw(b"hw/run.py", b"pass\n", external_attr=0o100700 << 16), Raw(b"hw/sub/w.bin", b"\x01")],
    )
    old = os.umask(0o077)
    try:
        unpack(z, dest)
    finally:
        os.umask(old)
    for d in (dest, dest / "hw", dest / "hw" / "sub"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o755, d
    for f in (dest / "hw" / "run.py", dest / "hw" / "sub" / "w.bin"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f


def test_dest_must_be_empty(tmp_path: Path, dest: Path) -> None:
    z = make_zip(tmp_path / "hw.zip", {"a.py": ""})
    dest.mkdir()
    (dest / "old").write_text("x")
    with pytest.raises(ValueError):
        unpack(z, dest)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert unpack(z, empty).files == ["a.py"]


def test_large_honest_file_within_limits(tmp_path: Path, dest: Path) -> None:
    blob = os.urandom(3 * 1024 * 1024)
    got = unpack(make_zip(tmp_path / "hw.zip", {"w.pt": blob}), dest)
    assert got.files == ["w.pt"]
    assert (dest / "w.pt").read_bytes() == blob


# --- not_a_zip ---------------------------------------------------------------------------------------


def _tar_bytes(gz: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tf:
        data = b"print(1)\n"
        ti = tarfile.TarInfo("hw/model.py")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


ARCHIVES = {
    "rar": (b"Rar!\x1a\x07\x00" + bytes(100), "RAR"),
    "rar5": (b"Rar!\x1a\x07\x01\x00" + bytes(100), "RAR"),
    "7z": (b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(100), "7-Zip"),
    "tar.gz": (_tar_bytes(gz=True), ".tar.gz"),
    "gzip": (gzip.compress(b"print(1)\n"), "gzip"),
    "tar": (_tar_bytes(), "tar"),
    "bzip2": (bz2.compress(b"print(1)\n"), "bzip2"),
    "xz": (lzma.compress(b"print(1)\n"), "xz"),
}


@pytest.mark.parametrize("kind", sorted(ARCHIVES))
def test_other_archive_formats_named(kind: str, tmp_path: Path, dest: Path) -> None:
    data, label = ARCHIVES[kind]
    path = tmp_path / "upload"
    path.write_bytes(data)
    err = reject(path, dest, ErrorCode.not_a_zip)
    assert label in err.message
    assert_says_repack(err)
    assert not dest.exists() or not any(dest.iterdir())


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + bytes(200), "PDF"),
        ("import torch\n# 模型\nclass Net: pass\n".encode(), "text file"),
        (b"\x89PNG\r\n\x1a\n" + bytes(50), "image"),
        (b"\x00\x01" + random.Random(0).randbytes(300).replace(b"PK", b"pk"), "unknown format"),
    ],
)
def test_non_archives(data: bytes, what: str, tmp_path: Path, dest: Path) -> None:
    path = tmp_path / "upload"
    path.write_bytes(data)
    err = reject(path, dest, ErrorCode.not_a_zip)
    assert what in err.message and "not an archive" in err.message
    assert_says_repack(err)


def test_empty_file(tmp_path: Path, dest: Path) -> None:
    path = tmp_path / "hw.zip"
    path.write_bytes(b"")
    err = reject(path, dest, ErrorCode.not_a_zip)
    assert "empty" in err.message and "空" in err.message_zh


def test_empty_zip(tmp_path: Path, dest: Path) -> None:
    path = make_zip(tmp_path / "hw.zip", {})
    err = reject(path, dest, ErrorCode.not_a_zip)
    assert "no files" in err.message


def test_only_junk_is_empty(tmp_path: Path, dest: Path) -> None:
    path = make_zip(tmp_path / "hw.zip", {"__MACOSX/._a": b"x", "hw/": b""})
    reject(path, dest, ErrorCode.not_a_zip)


def test_truncated_zip(tmp_path: Path, dest: Path) -> None:
    path = make_zip(tmp_path / "hw.zip", {"w.bin": os.urandom(5000)})
    path.write_bytes(path.read_bytes()[:200])
    err = reject(path, dest, ErrorCode.not_a_zip)
    assert "damaged or incomplete" in err.message
    assert_says_repack(err)


@pytest.fixture(params=["isal", "zlib"])
def inflater(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Deflate entries inflated by ISA-L (intake's default) or by zlib (where isal is missing)."""
    if request.param == "zlib":
        monkeypatch.setattr(intake, "_fast_zlib", None)
    else:
        assert intake._fast_zlib is not None, "the isal package is a dependency"
    return str(request.param)


def test_deflate_entries_inflate_with_isal_to_the_same_bytes_as_zlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(7)
    files = {
        "hw/model.py": "import torch\n# 模型\n" * 200,
        "hw/weights.pth": rng.randbytes(300_000) + bytes(200_000) + rng.randbytes(70_001),
        "hw/empty.txt": b"",
        "hw/one.txt": b"x",
    }
    z = make_zip(tmp_path / "hw.zip", files)
    fast: list[bool] = []
    real = intake._inflate_faster
    monkeypatch.setattr(intake, "_inflate_faster", lambda src: fast.append(real(src)) or fast[-1])
    unpack(z, tmp_path / "isal")
    assert fast == [True] * len(files)  # every entry, each a Deflate one, went through ISA-L
    monkeypatch.setattr(intake, "_fast_zlib", None)
    fast.clear()
    unpack(z, tmp_path / "zlib")
    assert fast == [False] * len(files)
    for name, content in files.items():
        want = content.encode() if isinstance(content, str) else content
        assert (tmp_path / "isal" / name).read_bytes() == want
        assert (tmp_path / "zlib" / name).read_bytes() == want


def test_stored_entries_are_copied_as_they_are(
    tmp_path: Path, dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    z = craft_zip(tmp_path / "hw.zip", [Raw(b"w.bin", b"stored bytes" * 1000, deflate=False)])
    fast: list[bool] = []
    real = intake._inflate_faster
    monkeypatch.setattr(intake, "_inflate_faster", lambda src: fast.append(real(src)) or fast[-1])
    assert unpack(z, dest).files == ["w.bin"]
    assert fast == [False]
    assert (dest / "w.bin").read_bytes() == b"stored bytes" * 1000


def test_corrupt_data(tmp_path: Path, dest: Path, inflater: str) -> None:
    path = make_zip(tmp_path / "hw.zip", {"model.py": os.urandom(5000)})
    data = bytearray(path.read_bytes())
    data[100:110] = b"\xff" * 10  # inside the compressed data of the only entry
    path.write_bytes(bytes(data))
    err = reject(path, dest, ErrorCode.not_a_zip)
    assert "'model.py'" in err.message and "damaged" in err.message
    assert not any(dest.iterdir())


def test_encrypted_entry(tmp_path: Path, dest: Path) -> None:
    path = craft_zip(tmp_path / "hw.zip", [Raw(b"model.py", b"secret", flags=0x1)])
    err = reject(path, dest, ErrorCode.not_a_zip)
    assert "password" in err.message and "密码" in err.message_zh


@pytest.mark.parametrize(("method", "label"), [(9, "Deflate64"), (12, "bzip2"), (14, "LZMA")])
def test_unsupported_compression(method: int, label: str, tmp_path: Path, dest: Path) -> None:
    path = craft_zip(tmp_path / "hw.zip", [Raw(b"model.py", b"x", method=method)])
    err = reject(path, dest, ErrorCode.not_a_zip)
    assert label in err.message and "Deflate" in err.message


def test_office_document(tmp_path: Path, dest: Path) -> None:
    path = make_zip(tmp_path / "r.docx", {"[Content_Types].xml": "<x/>", "word/document.xml": "<x/>"})
    err = reject(path, dest, ErrorCode.not_a_zip)
    assert "Office document" in err.message


# --- unsafe_archive ----------------------------------------------------------------------------------


UNSAFE_NAMES = {
    "absolute": b"/etc/cron.d/evil",
    "dotdot": b"../evil.py",
    "dotdot_nested": b"hw/../../evil.py",
    "backslash_dotdot": b"hw\\..\\..\\evil.py",
    "drive": b"C:\\Users\\evil.py",
    "drive_slash": b"C:/evil.py",
    "unc": b"\\\\server\\share\\evil.py",
    "nul": b"model.py\x00.txt",
    "newline": b"mo\ndel.py",
    "escape": b"\x1b[31mred.py",
    "deep": b"d/" * 21 + b"x.py",
}


@pytest.mark.parametrize("case", sorted(UNSAFE_NAMES))
def test_unsafe_names(case: str, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    z = craft_zip(tmp_path / "hw.zip", [Raw(b"ok.py", b"pass\n"), Raw(UNSAFE_NAMES[case], b"boom")])
    before = tree(tmp_path)
    err = reject(z, work / "out", ErrorCode.unsafe_archive)
    assert "unsafe" in err.message and "不安全" in err.message_zh
    assert_says_repack(err)
    assert "\x00" not in err.message and "\x1b" not in err.message and "\n" not in err.message
    # Nothing written anywhere: validation happens before the first byte.
    assert set(tree(tmp_path)) - set(before) <= {"work/out"}
    assert disk_bytes(work) == 0


def test_depth_limit_is_configurable(tmp_path: Path, dest: Path) -> None:
    z = craft_zip(tmp_path / "hw.zip", [Raw(b"a/b/c/d.py", b"")])
    reject(z, dest, ErrorCode.unsafe_archive, IntakeLimits(max_depth=3))
    assert unpack(z, tmp_path / "ok", IntakeLimits(max_depth=4)).files == ["d.py"]  # a/b/c/ looked through


@pytest.mark.parametrize(
    ("mode", "what"),
    [
        (stat.S_IFLNK | 0o777, "symbolic link"),
        (stat.S_IFCHR | 0o666, "device"),
        (stat.S_IFBLK | 0o666, "device"),
        (stat.S_IFIFO | 0o644, "FIFO"),
        (stat.S_IFSOCK | 0o644, "socket"),
    ],
)
def test_special_entries(mode: int, what: str, tmp_path: Path, dest: Path) -> None:
    z = craft_zip(
        tmp_path / "hw.zip", [Raw(b"ok.py"), Raw(b"link", b"/etc/passwd", external_attr=mode << 16)]
    )
    err = reject(z, dest, ErrorCode.unsafe_archive)
    assert what in err.message and "'link'" in err.message


def test_symlink_from_dos_system_also_refused(tmp_path: Path, dest: Path) -> None:
    mode = stat.S_IFLNK | 0o777
    z = craft_zip(tmp_path / "hw.zip", [Raw(b"link", b"/etc", external_attr=mode << 16, create_system=0)])
    reject(z, dest, ErrorCode.unsafe_archive)


@pytest.mark.parametrize(
    "names",
    [
        [b"model.py", b"model.py"],
        [b"hw/model.py", b"hw\\model.py"],
        [b"hw/model.py", b"hw//./model.py"],
        ["caf\u00e9.py".encode(), "cafe\u0301.py".encode()],  # NFC and NFD (macOS) spellings
        [b"hw/model", b"hw/model/x.py"],  # a file and a folder of the same name
    ],
)
def test_colliding_names(names: list[bytes], tmp_path: Path, dest: Path) -> None:
    z = craft_zip(tmp_path / "hw.zip", [Raw(n, b"x") for n in names])
    err = reject(z, dest, ErrorCode.unsafe_archive)
    assert "same path" in err.message or "both a file and a folder" in err.message


def test_overlapping_entries(tmp_path: Path, dest: Path) -> None:
    # Two central-directory records pointing at one local entry, as in overlapped zip bombs.
    z = craft_zip(tmp_path / "hw.zip", [Raw(b"a.py", os.urandom(4000), deflate=False)])
    data = z.read_bytes()
    cd_at = data.rindex(b"PK\x01\x02")
    record = data[cd_at:-22]
    second = record.replace(b"a.py", b"b.py")
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 2, 2, 2 * len(record), cd_at, 0)
    z.write_bytes(data[:cd_at] + record + second + eocd)
    err = reject(z, dest, ErrorCode.unsafe_archive)
    assert "overlap" in err.message


# --- too_large ---------------------------------------------------------------------------------------


def test_zip_file_too_big(tmp_path: Path, dest: Path) -> None:
    z = make_zip(tmp_path / "hw.zip", {"w.pt": os.urandom(20_000)})
    err = reject(z, dest, ErrorCode.too_large, IntakeLimits(max_zip_bytes=10_000))
    assert "limit" in err.message and "Leave out" in err.message


def test_total_too_big(tmp_path: Path, dest: Path) -> None:
    z = make_zip(tmp_path / "hw.zip", {"a.bin": os.urandom(6000), "b.bin": os.urandom(6000)})
    err = reject(z, dest, ErrorCode.too_large, IntakeLimits(max_total_bytes=10_000))
    assert "unpacks to more than" in err.message


def test_too_many_entries(tmp_path: Path, dest: Path) -> None:
    z = make_zip(tmp_path / "hw.zip", {f"f{i}.py": "" for i in range(30)})
    err = reject(z, dest, ErrorCode.too_large, IntakeLimits(max_entries=20))
    assert "30 entries" in err.message and ".git" in err.message


def test_too_many_entries_refused_before_parsing(
    tmp_path: Path, dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    z = make_zip(tmp_path / "hw.zip", {f"f{i}.py": "" for i in range(30)})

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("zipfile must not parse a directory that is too big")

    monkeypatch.setattr(zipfile, "ZipFile", boom)
    reject(z, dest, ErrorCode.too_large, IntakeLimits(max_entries=20))


def test_zip_bomb_rejected_fast(tmp_path: Path, dest: Path, inflater: str) -> None:
    size = 200 * 1024 * 1024
    # 200 MB of zeros deflate to ~200 KB; built in chunks so the test never holds 200 MB.
    crc = 0
    for _ in range(200):
        crc = zlib.crc32(bytes(1024 * 1024), crc)
    z = _rebuild_single(tmp_path / "bomb.zip", b"zeros.npy", deflate_zeros(size), size, crc, method=8)
    assert z.stat().st_size < 1024 * 1024
    start = time.monotonic()
    err = reject(z, dest, ErrorCode.too_large)
    assert time.monotonic() - start < 1.0
    assert "zip bomb" in err.message and "炸弹" in err.message_zh
    assert disk_bytes(tmp_path) == z.stat().st_size  # nothing but the zip itself on disk


def test_lying_header_caught_while_streaming(tmp_path: Path, dest: Path, inflater: str) -> None:
    # Declares 1000 bytes (ratio and totals look harmless) but inflates to 50 MB.
    actual = 50 * 1024 * 1024
    payload = deflate_zeros(actual)
    z = _rebuild_single(tmp_path / "liar.zip", b"model.pt", payload, 1000, zlib.crc32(bytes(1000)), method=8)
    start = time.monotonic()
    err = reject(z, dest, ErrorCode.too_large)
    assert time.monotonic() - start < 1.0
    assert "more data than the zip declares" in err.message
    assert disk_bytes(dest) == 0


def test_lying_stored_header_caught(tmp_path: Path, dest: Path) -> None:
    # Stored entry whose compressed size is honest but whose declared size is smaller.
    z = craft_zip(tmp_path / "hw.zip", [Raw(b"w.bin", os.urandom(200_000), deflate=False, file_size=100)])
    reject(z, dest, ErrorCode.too_large)
    assert disk_bytes(dest) == 0


def test_declared_larger_than_actual(tmp_path: Path, dest: Path, inflater: str) -> None:
    z = craft_zip(tmp_path / "hw.zip", [Raw(b"model.py", b"x = 1\n" * 100, file_size=5000)])
    err = reject(z, dest, ErrorCode.not_a_zip)
    assert "'model.py'" in err.message


def test_small_compressible_files_are_not_bombs(tmp_path: Path, dest: Path) -> None:
    # 900 KB of zeros compresses ~1000:1 but is below the size where the ratio matters.
    z = make_zip(tmp_path / "hw.zip", {"zeros.npy": bytes(900 * 1024)})
    assert unpack(z, dest).files == ["zeros.npy"]


def _rebuild_single(path: Path, name: bytes, payload: bytes, size: int, crc: int, method: int) -> Path:
    local = struct.pack(
        "<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, len(payload), size, len(name), 0
    )
    central = struct.pack(
        "<4s6H3L5H2L", b"PK\x01\x02", (3 << 8) | 20, 20, 0, method, 0, 0x21, crc, len(payload), size,
        len(name), 0, 0, 0, 0, 0o100644 << 16, 0,
    )  # fmt: skip
    body = local + name + payload
    cd = central + name
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(cd), len(body), 0)
    path.write_bytes(body + cd + eocd)
    return path


# --- sniffing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"PK\x03\x04" + bytes(30), "zip"),
        (b"PK\x05\x06" + bytes(18), "zip"),
        (ARCHIVES["rar"][0], "rar"),
        (ARCHIVES["rar5"][0], "rar"),
        (ARCHIVES["7z"][0], "7z"),
        (ARCHIVES["tar.gz"][0][:512], "gzip"),
        (ARCHIVES["gzip"][0], "gzip"),
        (ARCHIVES["tar"][0][:512], "tar"),
        (ARCHIVES["bzip2"][0], "bzip2"),
        (ARCHIVES["xz"][0], "xz"),
        (b"%PDF-1.4\n", None),
        (b"import torch\n", None),
        (b"", None),
    ],
)
def test_sniff_archive_kind(head: bytes, kind: str | None) -> None:
    assert sniff_archive_kind(head) == kind


def test_sniff_real_zip(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "hw.zip", {"a.py": ""})
    assert sniff_archive_kind(z.read_bytes()[:512]) == "zip"


def test_damaged_zips_are_refused_with_an_intake_code_never_another_exception(tmp_path: Path) -> None:
    # Random byte flips in a small zip with a Chinese name. Before, about 4% of them raised out of
    # unpack (UnicodeDecodeError from a local header's name, OSError from a negative seek,
    # NotImplementedError "zip file version 13.6") and the submission ended as `internal`.
    base = make_zip(
        tmp_path / "base.zip",
        {
            "hw/model.py": "import torch\n# 模型\n" * 20,
            "hw/模型.pth": bytes(range(256)) * 4,
            "hw/README.md": "hi",
        },
    ).read_bytes()
    rng = random.Random(1)
    outcomes: dict[str, int] = {}
    for i in range(1500):
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        z = tmp_path / f"{i}.zip"
        z.write_bytes(bytes(data))
        try:
            unpack(z, tmp_path / f"{i}")
            outcome = "unpacked"
        except GradeError as e:
            outcome = e.code.value
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        z.unlink()
        shutil.rmtree(tmp_path / f"{i}", ignore_errors=True)
    assert set(outcomes) <= {"unpacked", "not_a_zip", "unsafe_archive", "too_large"}, outcomes
    assert outcomes["not_a_zip"] > 1000 and outcomes["unpacked"] > 50, outcomes
