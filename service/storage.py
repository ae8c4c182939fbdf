"""Content-addressed blob storage for uploaded zips: <storage>/ab/cd/<sha256>.zip.

Identical uploads share one file; a blob is written to a temporary file first and moved into place
atomically, so a crash never leaves a half-written blob under its final name.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CHUNK = 1024 * 1024
HEAD_BYTES = 512


class BlobTooLarge(Exception):
    pass


@dataclass
class StagedBlob:
    """An upload written to a temporary file, hashed, not yet in the store."""

    tmp_path: Path
    sha256: str
    size: int
    head: bytes

    def discard(self) -> None:
        self.tmp_path.unlink(missing_ok=True)


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def relpath(self, sha256: str) -> str:
        return f"{sha256[:2]}/{sha256[2:4]}/{sha256}.zip"

    def path(self, relpath: str) -> Path:
        resolved = (self.root / relpath).resolve()
        if not resolved.is_relative_to(self.root.resolve()):
            raise ValueError(f"blob path escapes the store: {relpath!r}")
        return resolved

    def stage(self, stream: BinaryIO, max_bytes: int) -> StagedBlob:
        """Copy `stream` to a temporary file in the store, hashing it; raise BlobTooLarge past max_bytes."""
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=tmp_dir, suffix=".part")
        tmp_path = Path(name)
        digest = hashlib.sha256()
        size = 0
        head = b""
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise BlobTooLarge
                    if len(head) < HEAD_BYTES:
                        head += chunk[: HEAD_BYTES - len(head)]
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise
        return StagedBlob(tmp_path=tmp_path, sha256=digest.hexdigest(), size=size, head=head)

    def commit(self, staged: StagedBlob) -> str:
        """Move a staged blob to its content address (or drop it if that blob exists); return relpath."""
        rel = self.relpath(staged.sha256)
        final = self.root / rel
        if final.exists():
            staged.discard()
            return rel
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged.tmp_path, final)
        return rel
