"""Attachments (photos of hand derivations, PDFs, notes) read back out of a stored submission zip.

Only names the grader listed in the result (`details["attachments"]`) are served: the grader's intake
already refused unsafe names, and the lookup here compares decoded names exactly, never builds a path.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from grader.intake import entry_path

CHUNK = 256 * 1024

# Served with their own type; anything else is application/octet-stream. No HTML or SVG: a student's
# file must never run script in the instructor's browser.
SAFE_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".pdf": "application/pdf",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
    ".csv": "text/plain; charset=utf-8",
}
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp"})


def listed(details: dict[str, object] | None) -> list[str]:
    """The attachment names a result lists (ignoring anything that is not a string)."""
    names = (details or {}).get("attachments") or []
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


def content_type(name: str) -> str:
    return SAFE_TYPES.get(PurePosixPath(name).suffix.lower(), "application/octet-stream")


def is_image(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES


def content_disposition(name: str, *, inline: bool = False) -> str:
    """RFC 6266 header: an ASCII fallback plus the exact UTF-8 name (Chinese file names survive)."""
    base = PurePosixPath(name).name or "attachment"
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;' else "_" for c in base)
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(base, safe='')}"


def find_entry(zf: zipfile.ZipFile, name: str, details: dict[str, object] | None) -> zipfile.ZipInfo | None:
    """The entry for attachment `name`, as the intake reported it: relative to the folders it looked
    through (`details["attachments_root"]`, "hw" or "hw/hw"), or by its zip path when it sat beside
    them. A result graded before the root was recorded knew one top folder at most."""
    paths = {entry_path(info).lstrip("/"): info for info in zf.infolist() if not info.is_dir()}
    if details is not None and "attachments_root" in details:
        root = details["attachments_root"]
        inside = f"{root}/{name}" if isinstance(root, str) and root else name
        return paths.get(inside) or paths.get(name)
    if name in paths:
        return paths[name]
    depth = name.count("/")
    for decoded, info in paths.items():
        top, _, rest = decoded.partition("/")
        if top and rest == name and decoded.count("/") == depth + 1:
            return info
    return None


def iter_entry(zip_path: Path, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """The entry's bytes in chunks (the zip is opened by the generator, so it closes when the body ends)."""
    with zipfile.ZipFile(zip_path) as zf, zf.open(info) as src:
        while chunk := src.read(CHUNK):
            yield chunk
