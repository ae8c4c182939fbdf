"""Safe intake of a student's zip: validate every entry, then unpack it into a fresh directory.

Nothing is written until the whole archive has been checked (names, entry types, declared sizes), and
while unpacking every byte is counted again, because header sizes are only claims. On any failure
the destination is emptied again and a `GradeError` says, in English and Chinese, what to do next.

Error codes:
- `not_a_zip`: not a zip (another archive format, detected by magic bytes, or not an archive at all),
  an empty, truncated or damaged zip, a password-protected zip, a compression method other than
  Stored/Deflate, an Office document (.docx/.xlsx/.pptx is a zip inside), or a zip with no files.
  Encryption is `not_a_zip` rather than `unsafe_archive`: a password is an innocent mistake and the
  fix is the same as for any unreadable zip, re-pack it.
- `unsafe_archive`: absolute paths, `..`, drive letters, control characters in names, symlinks,
  device/FIFO/socket entries, names that collide after normalisation, a file the grader may use
  (code, weights, data) whose name or path is too long to unpack (an attachment such as a photo with
  such a name is listed and kept in the zip, not unpacked), directories nested too deep, overlapping
  entries.
- `too_large`: the zip file, the total unpacked size, the number of entries or the compression ratio
  over `IntakeLimits`, or an entry that unpacks to more bytes than its header declares.
"""

from __future__ import annotations

import copy
import errno
import os
import re
import shutil
import stat
import struct
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, BinaryIO

from grader.report import ErrorCode, GradeError

# Intel ISA-L's Deflate (the `isal` package): zlib's API, about twice as fast to inflate.
_fast_zlib: Any = None
_ZLIB_DECOMPRESSOR = type(zlib.decompressobj(-15))  # what zipfile's reader inflates with
# What reading an entry raises when its data is damaged.
_DAMAGED_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    NotImplementedError,
)
# What opening an entry raises when its local header is damaged, beyond _DAMAGED_ERRORS: a name that
# is not the UTF-8 its flag says, an offset before the start of the file (a negative seek: ValueError,
# or OSError EINVAL, caught where it is raised).
_BAD_LOCAL_HEADER_ERRORS: tuple[type[BaseException], ...] = (UnicodeDecodeError, ValueError)
try:
    from isal import isal_zlib

    _fast_zlib = isal_zlib
    _DAMAGED_ERRORS += (_fast_zlib.error,)
except ImportError:  # pragma: no cover - it is a dependency; zlib serves without it
    pass

__all__ = ["IntakeLimits", "Unpacked", "sniff_archive_kind", "unpack"]

_MiB = 1024 * 1024


@dataclass(frozen=True)
class IntakeLimits:
    """Resource limits applied to one submitted zip."""

    max_zip_bytes: int = 100 * _MiB
    max_total_bytes: int = 512 * _MiB  # uncompressed
    max_entries: int = 2000
    max_ratio: float = 200.0  # per entry and overall uncompressed/compressed
    max_depth: int = 20


@dataclass
class Unpacked:
    """Where a submission was unpacked and what it contains."""

    root: Path  # directory where the student's files now are (the single top-level folder is looked through)
    files: list[str]  # every extracted file, posix relative to root, sorted
    attachments: list[str]  # files not graded automatically, kept for the instructor
    top_folder: str | None  # the single top-level folder that was looked through, if any


# Small files compress absurdly well (a 4 KB file of spaces is ~1000:1) without being a threat; the
# ratio only means "zip bomb" once the unpacked size is big enough to matter.
_RATIO_MIN_BYTES = 1 * _MiB
_CHUNK = 64 * 1024
_NAME_MAX_BYTES = 255  # Linux NAME_MAX, per path component
_PATH_MAX_BYTES = 1024
# A central-directory record is 46 bytes plus name/extra/comment; honest tools stay far below this
# average, and zipfile builds a ZipInfo per record before we can count them.
_CD_MAX_BYTES_PER_ENTRY = 4096
_UTF8_FLAG = 0x800
_ENCRYPTED_FLAGS = 0x1 | 0x40  # traditional and strong encryption
_PATCHED_FLAG = 0x20  # "compressed patched data", which zipfile cannot read
_UNICODE_PATH_EXTRA = 0x7075  # Info-ZIP Unicode Path extra field (WinRAR, Info-ZIP)
# zipfile bounds the output of each Deflate step but decompresses a bzip2/LZMA chunk in one call
# with no output limit, so one 4 KB chunk could expand to gigabytes in memory before we count it.
_SUPPORTED_METHODS = {zipfile.ZIP_STORED: "Stored", zipfile.ZIP_DEFLATED: "Deflate"}
_METHOD_NAMES = {9: "Deflate64", 12: "bzip2", 14: "LZMA", 93: "Zstandard", 95: "XZ", 98: "PPMd", 99: "AES"}

_JUNK_DIRS = {"__MACOSX", "__pycache__"}
_JUNK_FILES = {".ds_store", "thumbs.db"}  # compared casefolded: Windows names are case-insensitive
_JUNK_SUFFIXES = {".pyc", ".pyo"}
# Files the grader itself may use: code, manifest, weights, data and configs the code reads.
# Everything else (notebooks, documents, images, nested archives, ...) is an attachment.
_GRADED_SUFFIXES = {
    ".py",
    ".toml",
    ".pt",
    ".pth",
    ".bin",
    ".ckpt",
    ".safetensors",
    ".pkl",
    ".pickle",
    ".joblib",
    ".npy",
    ".npz",
    ".csv",
    ".json",
    ".yaml",
    ".yml",
}

_ARCHIVE_NAMES = {
    "rar": ("a RAR archive (.rar)", "RAR 压缩包（.rar）"),
    "7z": ("a 7-Zip archive (.7z)", "7-Zip 压缩包（.7z）"),
    "gzip": ("a gzip file (.gz / .tar.gz / .tgz)", "gzip 压缩文件（.gz / .tar.gz / .tgz）"),
    "tar": ("a tar archive (.tar)", "tar 归档（.tar）"),
    "bzip2": ("a bzip2 file (.bz2 / .tar.bz2)", "bzip2 压缩文件（.bz2 / .tar.bz2）"),
    "xz": ("an xz file (.xz / .tar.xz)", "xz 压缩文件（.xz / .tar.xz）"),
}

_REPACK_EN = (
    "Please re-pack your homework as a .zip: on Windows right-click the folder → "
    '"Send to" → "Compressed (zipped) folder"; on macOS right-click → "Compress"; '
    "elsewhere run `zip -r hw.zip your-folder`."
)
_REPACK_ZH = (
    "请把作业重新打包为 .zip：Windows 上右键点击文件夹 →“发送到”→“压缩(zipped)文件夹”；"
    "macOS 上右键 →“压缩”；其他系统运行 `zip -r hw.zip 你的文件夹`。"
)
_SAFE_EN = "For safety the grader does not unpack such archives. " + _REPACK_EN
_SAFE_ZH = "出于安全考虑，评分系统不会解压这样的压缩包。" + _REPACK_ZH


def sniff_archive_kind(head: bytes) -> str | None:
    """Name the archive format of a file from its first bytes (512 are enough), or None."""
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return "zip"
    if head.startswith(b"Rar!\x1a\x07"):
        return "rar"
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return "7z"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh"):
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head[257:262] == b"ustar":
        return "tar"
    return None


def unpack(zip_path: Path, dest: Path, limits: IntakeLimits | None = None) -> Unpacked:
    """Check a student's zip and unpack it into `dest` (missing or empty); raise GradeError if refused."""
    limits = limits or IntakeLimits()
    zip_path = Path(zip_path)
    dest = Path(dest)
    zip_size = zip_path.stat().st_size
    _check_file(zip_path, zip_size, limits)
    try:
        zf = zipfile.ZipFile(zip_path)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        UnicodeDecodeError,
        EOFError,
        ValueError,
        NotImplementedError,  # "zip file version 13.6": a damaged central directory
    ) as exc:
        with zip_path.open("rb") as f:
            head = f.read(512)
        raise _unreadable(head) from exc
    with zf:
        entries = _plan(zf, zip_size, limits)
        return _extract(zf, entries, dest, limits)


# --- checks before opening -------------------------------------------------------------------------


def _check_file(zip_path: Path, zip_size: int, limits: IntakeLimits) -> None:
    if zip_size == 0:
        raise _err(
            ErrorCode.not_a_zip,
            "The uploaded file is empty (0 bytes). Check that you picked the right file and upload it again. "
            + _REPACK_EN,
            "上传的文件是空的（0 字节）。请确认选对了文件后重新上传。" + _REPACK_ZH,
        )
    if zip_size > limits.max_zip_bytes:
        raise _err(
            ErrorCode.too_large,
            f"The zip is {_mb(zip_size)}, over the {_mb(limits.max_zip_bytes)} limit. Leave out datasets, "
            "checkpoints you do not need and virtual environments, then zip again.",
            f"压缩包大小为 {_mb(zip_size)}，超过了 {_mb(limits.max_zip_bytes)} 的上限。请去掉数据集、"
            "不需要的检查点和虚拟环境后重新打包。",
        )
    with zip_path.open("rb") as f:
        head = f.read(512)
        kind = sniff_archive_kind(head)
        if kind is not None and kind != "zip":
            en, zh = _ARCHIVE_NAMES[kind]
            raise _err(
                ErrorCode.not_a_zip,
                f"The uploaded file is {en}, not a .zip. Only .zip is accepted. " + _REPACK_EN,
                f"上传的文件是{zh}，不是 .zip。只接受 .zip 格式。" + _REPACK_ZH,
            )
        counts = _central_directory_counts(f, zip_size)
    if counts is None:
        return  # zipfile will say what is wrong with it
    declared_entries, cd_size = counts
    if declared_entries > limits.max_entries or cd_size > limits.max_entries * _CD_MAX_BYTES_PER_ENTRY:
        raise _too_many(declared_entries, limits)


def _central_directory_counts(f: BinaryIO, zip_size: int) -> tuple[int, int] | None:
    # zipfile builds a ZipInfo for every central-directory record before anyone can count them, so
    # the end record's counts are read by hand first to refuse a huge directory cheaply.
    tail_len = min(zip_size, 22 + 0xFFFF)
    f.seek(zip_size - tail_len)
    tail = f.read(tail_len)
    pos = tail.rfind(b"PK\x05\x06")
    if pos < 0 or pos + 22 > len(tail):
        return None
    _, _, _, _, entries, cd_size, cd_offset, comment_len = struct.unpack("<4s4H2LH", tail[pos : pos + 22])
    if pos + 22 + comment_len != len(tail):
        return None  # the signature was inside a comment, or junk follows: leave it to zipfile
    if entries != 0xFFFF and cd_size != 0xFFFFFFFF and cd_offset != 0xFFFFFFFF:
        return entries, cd_size
    # ZIP64: the real counts are in the ZIP64 end record the locator just before points to.
    eocd_at = zip_size - tail_len + pos
    if eocd_at < 20:
        return None
    f.seek(eocd_at - 20)
    locator = f.read(20)
    if len(locator) != 20 or locator[:4] != b"PK\x06\x07":
        return None
    (z64_offset,) = struct.unpack("<Q", locator[8:16])
    if z64_offset + 56 > zip_size:
        return None
    f.seek(z64_offset)
    record = f.read(56)
    if record[:4] != b"PK\x06\x06":
        return None
    entries64, cd_size64 = struct.unpack("<2Q", record[32:48])
    return entries64, cd_size64


def _unreadable(head: bytes) -> GradeError:
    if sniff_archive_kind(head) == "zip":
        return _damaged_zip()
    en, zh = _describe_non_archive(head)
    return _err(
        ErrorCode.not_a_zip,
        f"The uploaded file is {en}, not an archive. Put all your homework files in one folder and upload "
        "that folder as a .zip. " + _REPACK_EN,
        f"上传的文件是{zh}，不是压缩包。请把所有作业文件放进一个文件夹，然后把该文件夹压缩成 .zip 上传。"
        + _REPACK_ZH,
    )


def _describe_non_archive(head: bytes) -> tuple[str, str]:
    if head.startswith(b"%PDF"):
        return "a PDF document", "PDF 文档"
    if head.startswith(b"\x89PNG") or head.startswith(b"\xff\xd8\xff"):
        return "an image", "图片"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return "an old-style Office document (.doc/.xls)", "旧版 Office 文档（.doc/.xls）"
    if b"\x00" not in head and _is_utf8_prefix(head):
        return "a text file (for example a .py or .ipynb)", "文本文件（例如 .py 或 .ipynb）"
    return "in an unknown format", "未知格式的文件"


def _is_utf8_prefix(head: bytes) -> bool:
    # The 512-byte head may cut a multi-byte character in half.
    for cut in range(4):
        try:
            head[: len(head) - cut].decode("utf-8")
            return True
        except UnicodeDecodeError:
            continue
    return False


# --- planning: every entry checked before anything is written --------------------------------------


@dataclass
class _Entry:
    info: zipfile.ZipInfo
    name: str  # decoded, as shown to the student
    parts: tuple[str, ...]  # normalised path components
    is_dir: bool
    # A name too long for the filesystem on an attachment (or a folder): listed, kept in the stored
    # zip for the instructor, not unpacked (nothing graded reads it).
    kept_in_zip: bool = False


def _plan(zf: zipfile.ZipFile, zip_size: int, limits: IntakeLimits) -> list[_Entry]:
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise _too_many(len(infos), limits)
    entries = [_check_entry(info, limits) for info in infos]
    _check_sizes(entries, zip_size, limits)
    kept = [e for e in entries if e.parts and not _is_junk(e.parts)]
    _check_collisions(kept)
    files = [e for e in kept if not e.is_dir]
    if not files:
        raise _err(
            ErrorCode.not_a_zip,
            "The zip contains no files (only folders or system files such as __MACOSX). Check that you "
            "zipped the folder with your homework in it. " + _REPACK_EN,
            "压缩包里没有文件（只有文件夹或 __MACOSX 之类的系统文件）。请确认压缩的是装有作业的文件夹。"
            + _REPACK_ZH,
        )
    _check_not_office(files)
    return kept


def entry_path(info: zipfile.ZipInfo) -> str:
    """An entry's path as intake reads it: the name decoded (UTF-8 flag, Info-ZIP Unicode path, UTF-8 or
    GBK bytes), backslashes as separators, NFC-normalised. Attachment names in reports are these paths."""
    # Old Windows tools write backslashes; they are separators, and must not smuggle in a `..`.
    return unicodedata.normalize("NFC", _decode_name(info).replace("\\", "/"))


def _check_entry(info: zipfile.ZipInfo, limits: IntakeLimits) -> _Entry:
    name = _decode_name(info)
    shown = _show(name)
    if any(_is_control(ch) for ch in name):
        raise _unsafe(shown, "its name contains NUL or control characters", "文件名包含 NUL 或控制字符")
    path = entry_path(info)
    if path.startswith("/"):
        raise _unsafe(shown, "it is an absolute path", "它是绝对路径")
    if re.match(r"[A-Za-z]:", path):
        raise _unsafe(shown, "it starts with a drive letter", "它以盘符开头")
    parts = tuple(p for p in path.split("/") if p not in ("", "."))
    if ".." in parts:
        raise _unsafe(
            shown, "it contains '..' and would land outside the folder", "它包含 '..'，会解压到文件夹之外"
        )
    longest = max((len(p.encode("utf-8")) for p in parts), default=0)
    too_long = longest > _NAME_MAX_BYTES or len(path.encode("utf-8")) > _PATH_MAX_BYTES
    if len(parts) > limits.max_depth:
        raise _unsafe(
            shown,
            f"it is nested more than {limits.max_depth} folders deep",
            f"它的目录层级超过 {limits.max_depth} 层",
        )
    ftype = stat.S_IFMT(info.external_attr >> 16)
    if ftype == stat.S_IFLNK:
        raise _unsafe(shown, "it is a symbolic link", "它是符号链接")
    if ftype not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise _unsafe(
            shown, "it is a device, FIFO or socket, not a file", "它是设备、管道或套接字，不是普通文件"
        )
    if info.flag_bits & _ENCRYPTED_FLAGS:
        raise _err(
            ErrorCode.not_a_zip,
            f"The zip is password-protected ({shown} is encrypted), so the grader cannot read it. "
            "Zip your homework again without a password. " + _REPACK_EN,
            f"压缩包设置了密码（{shown} 已加密），评分系统无法读取。请不加密码重新压缩。" + _REPACK_ZH,
        )
    is_dir = path.endswith("/") or ftype == stat.S_IFDIR
    if not is_dir and not parts:
        raise _unsafe(shown, "it has an empty name", "它的名字为空")
    if too_long and not (is_dir or _is_attachment(path)):
        raise _name_too_long(shown, longest, len(path.encode("utf-8")))
    if not is_dir and (info.compress_type not in _SUPPORTED_METHODS or info.flag_bits & _PATCHED_FLAG):
        method = _METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
        if info.flag_bits & _PATCHED_FLAG:
            method = "patched data"
        raise _err(
            ErrorCode.not_a_zip,
            f"{shown} is compressed with {method}, which the grader does not support. Re-pack with the "
            "standard zip format (Deflate, the default of every zip tool). " + _REPACK_EN,
            f"{shown} 使用了 {method} 压缩方式，评分系统不支持。请使用标准 zip 格式（Deflate，"
            "各种压缩工具的默认设置）重新打包。" + _REPACK_ZH,
        )
    return _Entry(info=info, name=name, parts=parts, is_dir=is_dir, kept_in_zip=too_long)


def _decode_name(info: zipfile.ZipInfo) -> str:
    # orig_filename keeps what follows a NUL; ZipInfo.filename silently cuts it off.
    if info.flag_bits & _UTF8_FLAG:
        return info.orig_filename
    # Without the UTF-8 flag zipfile decoded the bytes as cp437, which maps all 256 byte values, so
    # encoding back gives the exact bytes the tool wrote (UTF-8 on Linux/macOS, GBK on Chinese Windows).
    raw = info.orig_filename.encode("cp437")
    unicode_path = _unicode_path_extra(info.extra, raw)
    if unicode_path is not None:
        return unicode_path
    for encoding in ("utf-8", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return info.orig_filename


def _unicode_path_extra(extra: bytes, raw: bytes) -> str | None:
    i = 0
    while i + 4 <= len(extra):
        header_id, size = struct.unpack("<HH", extra[i : i + 4])
        data = extra[i + 4 : i + 4 + size]
        i += 4 + size
        # The CRC ties the field to the name it was made for; a renaming tool may leave it stale.
        if header_id == _UNICODE_PATH_EXTRA and len(data) >= 5 and data[0] == 1:
            if struct.unpack("<L", data[1:5])[0] != zlib.crc32(raw):
                return None
            try:
                return data[5:].decode("utf-8")
            except UnicodeDecodeError:
                return None
    return None


def _check_sizes(entries: list[_Entry], zip_size: int, limits: IntakeLimits) -> None:
    total = 0
    for e in entries:
        if e.is_dir:
            continue
        size, packed = e.info.file_size, e.info.compress_size
        total += size
        if total > limits.max_total_bytes:
            raise _too_big_total(total, limits)
        if size >= _RATIO_MIN_BYTES and size > limits.max_ratio * max(packed, 1):
            raise _bomb(_show(e.name), size / max(packed, 1), limits)
        if e.info.header_offset + packed > zip_size:
            raise _damaged_zip()
    # Against the real file size, not the sum of declared compressed sizes, which can lie.
    if total >= _RATIO_MIN_BYTES and total > limits.max_ratio * zip_size:
        raise _bomb("the zip as a whole", total / zip_size, limits)
    packed_total = sum(e.info.compress_size for e in entries)
    if packed_total > zip_size:
        raise _err(
            ErrorCode.unsafe_archive,
            "The zip's entries overlap each other (a trick used by zip bombs). " + _SAFE_EN,
            "压缩包中的条目相互重叠（这是 zip 炸弹常用的手法）。" + _SAFE_ZH,
        )


def _is_junk(parts: tuple[str, ...]) -> bool:
    base = parts[-1]
    return (
        any(p in _JUNK_DIRS for p in parts)
        or base.casefold() in _JUNK_FILES
        or base.startswith("._")  # AppleDouble metadata, the same thing __MACOSX/ holds
        or PurePosixPath(base).suffix.lower() in _JUNK_SUFFIXES
    )


def _check_collisions(kept: list[_Entry]) -> None:
    files: dict[tuple[str, ...], _Entry] = {}
    dirs: set[tuple[str, ...]] = set()
    for e in kept:
        parents = {e.parts[:i] for i in range(1, len(e.parts))}
        dirs |= parents
        if e.is_dir:
            dirs.add(e.parts)
            continue
        if e.parts in files:
            other = files[e.parts]
            raise _unsafe(
                _show(e.name),
                f"it has the same path as {_show(other.name)}",
                f"它与 {_show(other.name)} 路径相同",
            )
        files[e.parts] = e
    for parts, e in files.items():
        if parts in dirs:
            raise _unsafe(_show(e.name), "it is both a file and a folder", "它既是文件又是文件夹")


def _check_not_office(files: list[_Entry]) -> None:
    names = {e.parts for e in files}
    if ("[Content_Types].xml",) in names and any(p[0] in ("word", "xl", "ppt") for p in names):
        raise _err(
            ErrorCode.not_a_zip,
            "The uploaded file is an Office document (.docx/.xlsx/.pptx), not a zip of your homework. "
            "Put your homework files in a folder and upload that folder zipped. " + _REPACK_EN,
            "上传的文件是 Office 文档（.docx/.xlsx/.pptx），不是作业压缩包。请把作业文件放进一个文件夹，"
            "再把该文件夹压缩后上传。" + _REPACK_ZH,
        )


# --- extraction --------------------------------------------------------------------------------------


def _extract(zf: zipfile.ZipFile, entries: list[_Entry], dest: Path, limits: IntakeLimits) -> Unpacked:
    _prepare_dest(dest)
    try:
        written_total = 0
        for e in entries:
            if e.kept_in_zip:
                continue
            target = _inside(dest, e.parts)
            if e.is_dir:
                _make_dirs(dest, e.parts)
                continue
            _make_dirs(dest, e.parts[:-1])
            budget = limits.max_total_bytes - written_total
            written_total += _copy_entry(zf, e, target, budget)
    except BaseException:
        _empty(dest)
        raise
    prefix = _top_folders(entries)
    skip = len(prefix)
    inside = [e for e in entries if not e.is_dir and e.parts[:skip] == prefix]
    files = sorted("/".join(e.parts[skip:]) for e in inside if not e.kept_in_zip)
    kept = ["/".join(e.parts[skip:]) for e in inside if e.kept_in_zip]
    # A README or a report beside the looked-through folder: kept for the instructor, by its zip path.
    beside = ["/".join(e.parts) for e in entries if not e.is_dir and e.parts[:skip] != prefix]
    attachments = sorted([f for f in files if _is_attachment(f)] + kept + beside)
    top = "/".join(prefix) or None
    return Unpacked(root=dest.joinpath(*prefix), files=files, attachments=attachments, top_folder=top)


def _prepare_dest(dest: Path) -> None:
    if dest.is_symlink() or (dest.exists() and (not dest.is_dir() or any(dest.iterdir()))):
        raise ValueError(f"unpack destination must be missing or an empty directory: {dest}")
    dest.mkdir(parents=True, exist_ok=True)
    # The sandbox runs as another uid; the umask must not hide the submission from it.
    dest.chmod(0o755)


def _inside(dest: Path, parts: tuple[str, ...]) -> Path:
    # Names were validated already; this guards against a future change to that validation.
    target = dest.joinpath(*parts)
    if os.path.commonpath([os.path.abspath(dest), os.path.abspath(target)]) != os.path.abspath(dest):
        raise _unsafe(_show("/".join(parts)), "it would land outside the folder", "它会被解压到文件夹之外")
    return target


def _make_dirs(dest: Path, parts: tuple[str, ...]) -> None:
    current = dest
    for part in parts:
        current = current / part
        if current.is_dir() and not current.is_symlink():
            continue
        os.mkdir(current, 0o755)
        os.chmod(current, 0o755)


def _copy_entry(zf: zipfile.ZipFile, e: _Entry, target: Path, budget: int) -> int:
    declared = e.info.file_size
    # zipfile stops at the declared size and silently truncates; let it run past it so a lying header
    # shows up as extra bytes we refuse, instead of a cut file. The margin outlasts one read.
    probe = copy.copy(e.info)
    probe.file_size = declared + 2 * _CHUNK
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        src = zf.open(probe)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise  # reading the stored zip failed: ours to fix, not the student's
        raise _damaged(e.name) from exc
    except _DAMAGED_ERRORS + _BAD_LOCAL_HEADER_ERRORS as exc:
        raise _damaged(e.name) from exc
    fd = os.open(target, flags, 0o644)
    written = 0
    try:
        with os.fdopen(fd, "wb") as dst, src:
            _inflate_faster(src)
            os.fchmod(dst.fileno(), 0o644)
            for chunk in _chunks(src):
                written += len(chunk)
                if written > declared or written > budget:
                    raise _err(
                        ErrorCode.too_large,
                        f"{_show(e.name)} unpacks to more data than the zip declares for it (a damaged zip "
                        "or a zip bomb). Create the zip again with a standard tool. " + _REPACK_EN,
                        f"{_show(e.name)} 解压后的数据比压缩包声明的更多（压缩包损坏或是 zip 炸弹）。"
                        "请用标准工具重新压缩。" + _REPACK_ZH,
                    )
                dst.write(chunk)
    except _DAMAGED_ERRORS as exc:
        raise _damaged(e.name) from exc
    if written != declared:
        raise _damaged(e.name)
    return written


def _inflate_faster(src: IO[bytes]) -> bool:
    """Have zipfile's reader of a Deflate entry, opened and not yet read, inflate with ISA-L instead
    of zlib: the same calls (decompress with an output bound, unconsumed_tail, eof, flush), so
    zipfile still bounds every step's output, checks the CRC and the sizes. The MNIST example's
    weights (381 KB deflated, 410 KB) inflate in 1.2 ms instead of 2.2 ms here. False (zlib stays)
    where the reader is not the one this was written for."""
    if _fast_zlib is None or getattr(src, "_compress_type", None) != zipfile.ZIP_DEFLATED:
        return False
    if not isinstance(getattr(src, "_decompressor", None), _ZLIB_DECOMPRESSOR):
        return False
    src._decompressor = _fast_zlib.decompressobj(-15)  # type: ignore[attr-defined]
    return True


def _chunks(src: IO[bytes]) -> Iterator[bytes]:
    while chunk := src.read(_CHUNK):
        yield chunk


def _empty(dest: Path) -> None:
    # dest was empty before unpacking started, so everything in it is ours to remove.
    for child in dest.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _top_folders(entries: list[_Entry]) -> tuple[str, ...]:
    """The folders to look through to the student's files: while a level holds one folder and, beside
    it, no file the grader uses (a README or a report may be there), go into it. Windows' "Extract
    All" then zipping the result gives hw/hw/...; homework.toml and the code are then at the root."""
    prefix: tuple[str, ...] = ()
    while True:
        level = len(prefix)
        under = [e for e in entries if e.parts[:level] == prefix and len(e.parts) > level]
        folders = {e.parts[level] for e in under if len(e.parts) > level + 1 or e.is_dir}
        files = [e for e in under if len(e.parts) == level + 1 and not e.is_dir]
        if len(folders) != 1 or any(not _is_attachment(e.parts[-1]) for e in files):
            return prefix
        prefix = (*prefix, folders.pop())


def _is_attachment(path: str) -> bool:
    return PurePosixPath(path).suffix.lower() not in _GRADED_SUFFIXES


# --- messages ----------------------------------------------------------------------------------------


def _err(code: ErrorCode, en: str, zh: str) -> GradeError:
    return GradeError(code, en, zh)


def _unsafe(shown: str, why_en: str, why_zh: str) -> GradeError:
    return _err(
        ErrorCode.unsafe_archive,
        f"The zip contains an unsafe entry {shown}: {why_en}. " + _SAFE_EN,
        f"压缩包中有不安全的条目 {shown}：{why_zh}。" + _SAFE_ZH,
    )


def _name_too_long(shown: str, longest: int, total: int) -> GradeError:
    what_en = (
        f"a file or folder name in it has {longest} bytes (at most {_NAME_MAX_BYTES}: about 85 Chinese "
        "characters or 255 Latin letters)"
        if longest > _NAME_MAX_BYTES
        else f"its whole path has {total} bytes (at most {_PATH_MAX_BYTES})"
    )
    what_zh = (
        f"其中一个文件或文件夹的名字有 {longest} 字节（上限 {_NAME_MAX_BYTES} 字节：约 85 个汉字或 255 个英文字母）"
        if longest > _NAME_MAX_BYTES
        else f"它的完整路径有 {total} 字节（上限 {_PATH_MAX_BYTES} 字节）"
    )
    return _err(
        ErrorCode.unsafe_archive,
        f"{shown} cannot be unpacked: {what_en}. Give it (and its folders) a shorter name, update any code "
        "that refers to it, and zip again.",
        f"{shown} 无法解压：{what_zh}。请给它（以及所在的文件夹）改一个短一些的名字，同时修改引用它的代码，然后重新压缩。",
    )


def _damaged_zip() -> GradeError:
    return _err(
        ErrorCode.not_a_zip,
        "The file starts like a zip but is damaged or incomplete (often an interrupted upload or "
        "download). Create the zip again and re-upload it. " + _REPACK_EN,
        "该文件看起来是 zip，但已损坏或不完整（常见于上传或下载中断）。请重新压缩后再上传。" + _REPACK_ZH,
    )


def _damaged(name: str) -> GradeError:
    return _err(
        ErrorCode.not_a_zip,
        f"The zip is damaged: {_show(name)} does not match its checksum or size. Create the zip again and "
        "re-upload it. " + _REPACK_EN,
        f"压缩包已损坏：{_show(name)} 的校验和或大小不匹配。请重新压缩后再上传。" + _REPACK_ZH,
    )


def _too_many(count: int, limits: IntakeLimits) -> GradeError:
    return _err(
        ErrorCode.too_large,
        f"The zip has {count} entries, more than the {limits.max_entries} allowed. Leave out datasets, "
        "virtual environments (venv, site-packages) and .git, then zip again.",
        f"压缩包有 {count} 个条目，超过了 {limits.max_entries} 个的上限。请去掉数据集、虚拟环境"
        "（venv、site-packages）和 .git 后重新打包。",
    )


def _too_big_total(total: int, limits: IntakeLimits) -> GradeError:
    return _err(
        ErrorCode.too_large,
        f"The zip unpacks to more than {_mb(limits.max_total_bytes)} (at least {_mb(total)}). Leave out "
        "datasets and checkpoints you do not need, then zip again.",
        f"压缩包解压后超过 {_mb(limits.max_total_bytes)}（至少 {_mb(total)}）。请去掉数据集和不需要的检查点"
        "后重新打包。",
    )


def _bomb(what: str, ratio: float, limits: IntakeLimits) -> GradeError:
    return _err(
        ErrorCode.too_large,
        f"{what} compresses {ratio:.0f}:1, above the {limits.max_ratio:.0f}:1 the grader accepts "
        "(this is how zip bombs look). Remove the file or upload real data, then zip again.",
        f"{what} 的压缩比为 {ratio:.0f}:1，超过了允许的 {limits.max_ratio:.0f}:1（这是 zip 炸弹的特征）。"
        "请删除该文件或换成真实数据后重新打包。",
    )


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) == "Cc"


def _show(name: str) -> str:
    # Control characters escaped, long names shortened: the name goes into a web page.
    text = "".join(f"\\x{ord(ch):02x}" if _is_control(ch) else ch for ch in name)
    if len(text) > 120:
        text = text[:60] + "…" + text[-40:]
    return f"'{text}'"


def _mb(n: int) -> str:
    return f"{n / _MiB:.1f} MB"
