"""What an API process holds: the imports it pays for, and what its garbage collector walks."""

from __future__ import annotations

import gc
import subprocess
import sys

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.service.helpers import REPO_ROOT


def test_the_api_does_not_import_the_data_stack() -> None:
    # pandas and scikit-learn (0.7 s and ~80,000 objects per API process) are the grader's; the API
    # needs them only for the synthetic handout, and imports them there.
    code = (
        "import sys\n"
        "import service.main\n"
        "print(sorted(m for m in ('pandas', 'sklearn', 'scipy', 'torch') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_start_up_freezes_long_lived_objects_and_shutdown_releases_them(app: FastAPI) -> None:
    gc.unfreeze()
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_freeze_count() > 10_000  # the imported modules, the app, its routes and models
    assert gc.get_freeze_count() == 0
