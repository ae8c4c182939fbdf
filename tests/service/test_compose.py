"""docker-compose.yml cannot run here (no Docker engine); check its shape and that every command is
one our code accepts. test_e2e.py runs the migrate, api and worker commands as plain processes."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from typing import Any

import pytest
import yaml

from service.cli import build_parser
from service.config import API_KEEP_ALIVE_S
from tests.service.helpers import REPO_ROOT

COMPOSE: dict[str, Any] = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
APP_SERVICES = ["migrate", "api", "worker", "worker-gpu"]


def test_the_deployment_has_every_part() -> None:
    assert set(SERVICES) == {"postgres", "redis", "migrate", "api", "worker", "worker-gpu"}
    assert "pgdata" in COMPOSE["volumes"] and "submissions" in COMPOSE["volumes"]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_share_storage_and_production_settings(name: str) -> None:
    service = SERVICES[name]
    assert any(v.startswith("submissions:") for v in service["volumes"])
    env = service["environment"]
    assert env["HWGRADE_ENV"] == "prod"
    assert env["HWGRADE_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert env["HWGRADE_BROKER_URL"].startswith("redis://redis:")
    assert "${HWGRADE_SECRET_KEY:?" in env["HWGRADE_SECRET_KEY"]  # no default secret


def _hwgrade_commands(name: str) -> list[list[str]]:
    command = SERVICES[name]["command"]
    if command[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in command[2].split("&&")]
    return [command]


@pytest.mark.parametrize("name", ["migrate", "worker", "worker-gpu"])
def test_cli_commands_parse(name: str) -> None:
    for cmd in _hwgrade_commands(name):
        assert cmd[:3] == ["python", "-m", "service"], cmd
        build_parser().parse_args(cmd[3:])  # exits on an unknown option


def test_api_runs_the_app_factory() -> None:
    cmd = SERVICES["api"]["command"]
    assert cmd[:3] == ["uvicorn", "service.main:create_app", "--factory"]


def test_api_runs_several_processes() -> None:
    # uvicorn reads --workers from WEB_CONCURRENCY; compose fills it from HWGRADE_API_WORKERS.
    assert "--workers" not in SERVICES["api"]["command"]
    assert SERVICES["api"]["environment"]["WEB_CONCURRENCY"] == "${HWGRADE_API_WORKERS:-2}"


def test_gpu_worker_reserves_an_nvidia_gpu_and_consumes_the_gpu_queue() -> None:
    gpu = SERVICES["worker-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert gpu["environment"]["HWGRADE_DEVICE"] == "cuda"
    assert "gpu" in gpu["command"][gpu["command"].index("--queues") + 1].split(",")
    assert SERVICES["worker"]["environment"]["HWGRADE_DEVICE"] == "cpu"


def test_only_one_worker_runs_beat() -> None:
    assert sum("--beat" in SERVICES[n]["command"] for n in ("worker", "worker-gpu")) == 1


def test_the_readmes_plain_api_command_is_composes() -> None:
    # The README runs the same deployment without Docker: its uvicorn line is compose's command plus
    # --workers (compose passes that as WEB_CONCURRENCY), so it keeps idle connections as long.
    lines = [
        line
        for line in (REPO_ROOT / "README.md").read_text().splitlines()
        if line.startswith("uvicorn service.main:create_app")
    ]
    assert len(lines) == 1, lines
    plain = shlex.split(lines[0])
    workers = plain.index("--workers")
    assert plain[workers + 1] == "2"  # compose's default for HWGRADE_API_WORKERS
    del plain[workers : workers + 2]
    compose = [str(part) for part in SERVICES["api"]["command"]]
    assert plain == compose
    assert compose[compose.index("--timeout-keep-alive") + 1] == str(API_KEEP_ALIVE_S)


# What Docker grants a container's root by default (moby's oci/caps/defaults.go).
DOCKER_DEFAULT_CAPS = [
    "chown", "dac_override", "fsetid", "fowner", "mknod", "net_raw", "setgid", "setuid",
    "setfcap", "setpcap", "net_bind_service", "sys_chroot", "kill", "audit_write",
]  # fmt: skip
POOL_PROBE = (
    "from grader import sandbox\n"
    "import importlib.util\n"
    "spec = importlib.util.spec_from_file_location('z', sandbox.HARNESS_DIR / 'zygote.py')\n"
    "z = importlib.util.module_from_spec(spec); spec.loader.exec_module(z)\n"
    "print('POOL', sandbox.zygote_works(), 'REHEARSES', z._idle_priority_reversible())\n"
)


@pytest.mark.parametrize("name", ["worker", "worker-gpu"])
def test_workers_get_the_capabilities_of_the_warm_pool(name: str) -> None:
    assert {"SYS_ADMIN", "SYS_NICE"} <= set(SERVICES[name]["cap_add"])
    assert set(SERVICES[name]["security_opt"]) == {"seccomp=unconfined", "apparmor=unconfined"}


def _probe_with_caps(caps: list[str]) -> str:
    """Run POOL_PROBE as root holding exactly `caps` (util-linux setpriv), as a container would."""
    setpriv = shutil.which("setpriv")
    assert setpriv is not None
    only = "-all," + ",".join(f"+{c}" for c in caps)
    cmd = [setpriv, f"--bounding-set={only}", f"--inh-caps={only}", f"--ambient-caps={only}"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run(
        [*cmd, sys.executable, "-c", POOL_PROBE], capture_output=True, text=True, timeout=180, env=env
    )
    return out.stdout + out.stderr


@pytest.mark.slow
def test_the_workers_capabilities_are_what_the_warm_pool_needs() -> None:
    # Docker's default set alone cannot make the pool's namespaces; with compose's cap_add it can, and
    # its spares may rehearse. (Seccomp and AppArmor, unconfined in compose, are not modelled here.)
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and util-linux's setpriv")
    added = [c.lower() for c in SERVICES["worker"]["cap_add"]]
    assert "POOL True REHEARSES True" in _probe_with_caps(DOCKER_DEFAULT_CAPS + added)
    assert "POOL False REHEARSES False" in _probe_with_caps(DOCKER_DEFAULT_CAPS)
