"""The course's example submissions: one folder per example, named after its assignment.

`phone-price-*` and `mnist-*` are model submissions (code, trained weights, optional manifest);
`activations`, `backprop` and `optimizers` are correct function homework. They are graded by the
tests and by the embedded quickstart exactly as a student's zip would be.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parent
ASSIGNMENT_PREFIXES = ("phone-price", "mnist", "activations", "backprop", "optimizers")


@dataclass(frozen=True)
class Example:
    name: str
    slug: str
    folder: Path


def find_examples(root: Path = EXAMPLES_DIR) -> list[Example]:
    """Each non-empty subfolder whose name starts with an assignment slug, sorted by name."""
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        slug = next((s for s in ASSIGNMENT_PREFIXES if folder.name.startswith(s)), None)
        if slug is not None and any(p.is_file() for p in folder.rglob("*")):
            found.append(Example(folder.name, slug, folder))
    return found


def zip_folder(folder: Path) -> bytes:
    """The folder's files as a zip in memory, paths relative to the folder (as a student zips it)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                zf.write(path, path.relative_to(folder).as_posix())
    return buf.getvalue()
