"""docker-compose.yml (and its companions) validate with docker-compose and have the topology of issue 7."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.settings import Settings

from .conftest import ROOT
from .test_settings_table import env_names

COMPOSE = ROOT / "docker-compose.yml"
WORKER_FILE = ROOT / "docker-compose.worker.yml"
NFS_FILE = ROOT / "docker-compose.nfs.yml"
SETTINGS_ENV = {env for name, f in Settings.model_fields.items() for env in env_names(name, f)}
APP_SERVICES = ("api", "worker", "worker-cpu")


def run_compose(exe: str, tmp_path: Path, *args: str, env: dict[str, str] | None = None,
                files: tuple[Path, ...] = (COMPOSE,)) -> subprocess.CompletedProcess[str]:
    """``docker-compose -f ... <args>`` with only the given variables (no .env of the checkout, no host env)."""
    empty = tmp_path / "empty.env"
    empty.write_text("")
    cmd = [exe, "--project-directory", str(ROOT), "--env-file", str(empty)]
    for f in files:
        cmd += ["-f", str(f)]
    base = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    return subprocess.run(cmd + list(args), env={**base, **(env or {})}, capture_output=True, text=True, timeout=120)


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(COMPOSE)


# ---- docker-compose validates the files -----------------------------------------------------------------
def test_compose_file_validates(docker_compose: str, tmp_path: Path) -> None:
    r = run_compose(docker_compose, tmp_path, "config", "-q", env={"POSTGRES_PASSWORD": "pw"})
    assert r.returncode == 0, r.stderr
    r = run_compose(docker_compose, tmp_path, "--profile", "cpu", "config", "--services",
                    env={"POSTGRES_PASSWORD": "pw"})
    assert r.returncode == 0, r.stderr
    assert set(r.stdout.split()) == {"redis", "postgres", "api", "worker", "worker-cpu"}


def test_compose_without_password_is_refused(docker_compose: str, tmp_path: Path) -> None:
    """No default database password: rendering the file without one fails and says what to set."""
    r = run_compose(docker_compose, tmp_path, "config", "-q")
    assert r.returncode != 0
    assert "POSTGRES_PASSWORD" in r.stderr


def test_compose_renders_the_settings_urls(docker_compose: str, tmp_path: Path) -> None:
    r = run_compose(docker_compose, tmp_path, "config",
                    env={"POSTGRES_PASSWORD": "pw123", "SASFORMER_JOB_QUEUE": "cpu"})
    assert r.returncode == 0, r.stderr
    rendered = yaml.safe_load(r.stdout)
    for name in ("api", "worker"):
        env = rendered["services"][name]["environment"]
        assert env["DATABASE_URL"] == "postgresql://sasformer:pw123@postgres:5432/sasformer"
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["SASFORMER_JOB_QUEUE"] == "cpu"  # taken from the environment
    assert rendered["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] == "pw123"


def test_worker_file_and_nfs_override_validate(docker_compose: str, tmp_path: Path) -> None:
    env = {"REDIS_URL": "redis://:p@main:6379/0", "DATABASE_URL": "postgresql://u:p@main/db",
           "NFS_SERVER": "nfs", "NFS_EXPORT": "/export/sasformer"}
    r = run_compose(docker_compose, tmp_path, "config", files=(WORKER_FILE,), env=env)
    assert r.returncode == 0, r.stderr
    vol = yaml.safe_load(r.stdout)["volumes"]["sasformer-data"]
    assert vol["driver_opts"] == {"type": "nfs", "o": "addr=nfs,rw,nfsvers=4.1", "device": ":/export/sasformer"}
    r = run_compose(docker_compose, tmp_path, "config", files=(WORKER_FILE,))
    assert r.returncode != 0 and "REDIS_URL" in r.stderr + r.stdout

    env = {"POSTGRES_PASSWORD": "pw", "REDIS_PASSWORD": "rp", "NFS_SERVER": "nfs", "NFS_EXPORT": "/x"}
    r = run_compose(docker_compose, tmp_path, "--profile", "cpu", "config", files=(COMPOSE, NFS_FILE), env=env)
    assert r.returncode == 0, r.stderr
    merged = yaml.safe_load(r.stdout)
    for name in APP_SERVICES:
        assert merged["services"][name]["environment"]["REDIS_URL"] == "redis://:rp@redis:6379/0"
    assert "--requirepass" in merged["services"]["redis"]["command"]
    assert merged["services"]["redis"]["environment"]["REDISCLI_AUTH"] == "rp"
    assert merged["volumes"]["sasformer-data"]["driver_opts"]["type"] == "nfs"


def test_gpu_pinning_generator(docker_compose: str, tmp_path: Path) -> None:
    """scripts/compose_gpus.py: one worker per GPU with its own device id, valid beside docker-compose.yml."""
    out = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), str(ROOT / "scripts" / "compose_gpus.py"), "0,2"],
                         capture_output=True, text=True, check=True).stdout
    gpus = tmp_path / "docker-compose.gpus.yml"
    gpus.write_text(out)
    r = run_compose(docker_compose, tmp_path, "config", files=(COMPOSE, gpus), env={"POSTGRES_PASSWORD": "pw"})
    assert r.returncode == 0, r.stderr
    services = yaml.safe_load(r.stdout)["services"]
    for gpu in ("0", "2"):
        svc = services[f"worker-gpu{gpu}"]
        (dev,) = svc["deploy"]["resources"]["reservations"]["devices"]
        assert dev["device_ids"] == [gpu] and dev["driver"] == "nvidia" and "count" not in dev
        assert svc["command"] == services["worker"]["command"]
        assert svc["environment"] == services["worker"]["environment"]


# ---- the topology, read from the file --------------------------------------------------------------------
def test_redis_persists(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    cmd = redis["command"]
    cmd = cmd if isinstance(cmd, list) else cmd.split()
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert any(v.split(":")[0] in compose["volumes"] and v.split(":")[1] == "/data" for v in redis["volumes"])
    assert "ports" not in redis  # reachable only inside the compose network (docker-compose.nfs.yml publishes it)


def test_postgres_has_volume_healthcheck_and_no_password(compose: dict[str, Any]) -> None:
    pg = compose["services"]["postgres"]
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert any(v.split(":")[0] in compose["volumes"] and v.split(":")[1] == "/var/lib/postgresql/data"
               for v in pg["volumes"])
    assert re.fullmatch(r"\$\{POSTGRES_PASSWORD:\?[^}]*\}", pg["environment"]["POSTGRES_PASSWORD"])
    assert "ports" not in pg


def test_api_waits_for_healthy_dependencies(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]
    assert api["depends_on"] == {"redis": {"condition": "service_healthy"},
                                 "postgres": {"condition": "service_healthy"}}
    assert api["command"] == ["python", "-m", "backend"]
    assert any(str(p).endswith(":8000") for p in api["ports"])
    assert "/health" in " ".join(api["healthcheck"]["test"])
    env = api["environment"]
    assert env["DATABASE_URL"].startswith("postgresql://") and env["DATABASE_URL"].endswith("@postgres:5432/sasformer")
    assert env["REDIS_URL"].startswith("redis://redis:6379/")
    assert env["SASFORMER_HOST"] == "0.0.0.0"


def _command(svc: dict[str, Any]) -> str:
    cmd = svc["command"]
    return " ".join(cmd) if isinstance(cmd, list) else cmd


def test_gpu_worker(compose: dict[str, Any]) -> None:
    w = compose["services"]["worker"]
    assert _command(w).startswith("celery -A worker.celery_app worker ")
    assert " -Q gpu " in f" {_command(w)} " and " --concurrency 1 " in f" {_command(w)} "
    (dev,) = w["deploy"]["resources"]["reservations"]["devices"]
    assert dev["driver"] == "nvidia" and dev["count"] == 1 and dev["capabilities"] == ["gpu"]
    assert w["environment"]["SASFORMER_WORKER_QUEUES"] == "gpu"
    assert "profiles" not in w
    # --scale worker=N: nothing that makes two replicas collide
    assert "container_name" not in w and "ports" not in w and "hostname" not in w
    assert "inspect ping" in " ".join(w["healthcheck"]["test"])
    assert w["depends_on"]["api"] == {"condition": "service_healthy"}
    assert w["image"] == compose["services"]["api"]["image"]  # one image, different commands


def test_cpu_profile(compose: dict[str, Any]) -> None:
    w = compose["services"]["worker-cpu"]
    assert w["profiles"] == ["cpu"]
    assert " -Q cpu " in f" {_command(w)} " and " --concurrency 1 " in f" {_command(w)} "
    assert "deploy" not in w
    assert w["environment"]["SASFORMER_WORKER_QUEUES"] == "cpu"
    assert w["image"] == compose["services"]["api"]["image"]


def test_shared_storage(compose: dict[str, Any]) -> None:
    """API and every worker mount one named volume at SASFORMER_HOME."""
    mounts = set()
    for name in APP_SERVICES:
        svc = compose["services"][name]
        home = svc["environment"]["SASFORMER_HOME"]
        (vol,) = [v for v in svc["volumes"] if v.split(":")[1] == home]
        mounts.add(vol.split(":")[0])
    assert len(mounts) == 1
    assert mounts <= set(compose["volumes"])
    worker_file = load(WORKER_FILE)
    assert worker_file["services"]["worker"]["environment"]["SASFORMER_HOME"] == "/data"


@pytest.mark.parametrize("path", [COMPOSE, WORKER_FILE, NFS_FILE], ids=lambda p: p.name)
def test_environment_names_are_settings(path: Path) -> None:
    """Every variable the compose files hand to the app is a setting (a typo would be silently ignored)."""
    data = load(path)
    for name, svc in data["services"].items():
        if name not in APP_SERVICES:
            continue
        unknown = sorted(set(svc.get("environment", {})) - SETTINGS_ENV)
        assert not unknown, f"{path.name}: {name} sets variables that are no setting: {unknown}"


@pytest.mark.parametrize("path", [COMPOSE, WORKER_FILE, NFS_FILE], ids=lambda p: p.name)
def test_no_secret_literals(path: Path) -> None:
    """Passwords and tokens only come from interpolated variables, never from the file."""
    data = load(path)

    def walk(node: Any, key: str = "") -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, str(k))
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif isinstance(node, str) and re.search(r"PASSWORD|TOKEN|SECRET|REDISCLI_AUTH", key):
            assert node == "" or re.fullmatch(r"\$\{[A-Z_]+(:?[-?][^}]*)?\}", node), f"{path.name}: {key}={node!r}"
        if isinstance(node, str):
            # credentials inside URLs are interpolated too: scheme://user:${VAR...}@host
            for cred in re.findall(r"://[^:/@]*:([^@]+)@", node):
                assert cred.startswith("${"), f"{path.name}: literal credential in {node!r}"

    walk(data)
    assert "--requirepass" not in path.read_text() or "${REDIS_PASSWORD" in path.read_text()


def test_env_example_has_no_values_for_secrets() -> None:
    for line in (ROOT / ".env.example").read_text().splitlines():
        m = re.match(r"\s*#?\s*([A-Z_]+)=(.*)", line)
        if m and re.search(r"PASSWORD|TOKEN|SECRET", m.group(1)):
            assert m.group(2).split("#")[0].strip() == "", f".env.example gives {m.group(1)} a value"
