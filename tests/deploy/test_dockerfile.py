"""Static checks of the Dockerfile and its build context that can fail for real (no Docker engine here)."""

from __future__ import annotations

import fnmatch
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest

from .conftest import ROOT

DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;]+)$")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    assert not buf, "unterminated continuation line"
    return out


def args_of(kind: str) -> list[str]:
    return [a for k, a in instructions() if k == kind]


def pyproject_pins() -> dict[str, str]:
    pins = {}
    for dep in PYPROJECT["project"]["dependencies"]:
        m = PIN.match(dep.replace(" ", ""))
        assert m, f"pyproject.toml dependency is not pinned with ==: {dep}"
        pins[m.group(1).lower()] = m.group(3)
    return pins


def test_runs_as_non_root_user() -> None:
    users = args_of("USER")
    assert users, "no USER instruction: the container would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    kinds = [k for k, _ in instructions()]
    last_user = len(kinds) - 1 - kinds[::-1].index("USER")
    assert all(k != "RUN" for k in kinds[last_user:]), "RUN after the last USER runs as that user; keep USER last"
    assert any(re.search(rf"useradd\b.*\b{re.escape(users[-1].split(':')[0])}\b", r) for r in args_of("RUN"))


def test_healthcheck_probes_health() -> None:
    (hc,) = args_of("HEALTHCHECK")
    assert "NONE" not in hc.upper().split()
    assert "/health" in hc
    assert re.search(r"--interval=\d+s", hc) and re.search(r"--timeout=\d+s", hc)


def test_base_is_slim_python_311() -> None:
    arg_defaults = dict(a.split("=", 1) for a in args_of("ARG") if "=" in a)
    (base,) = args_of("FROM")
    image = re.sub(r"\$\{(\w+)\}", lambda m: arg_defaults[m.group(1)], base.split()[0])
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", image), image


def test_environment() -> None:
    env = " ".join(args_of("ENV"))
    pairs = dict(re.findall(r"(\w+)=(\S+)", env))
    assert pairs["HF_HUB_OFFLINE"] == "1"
    assert pairs["GRADIO_ANALYTICS_ENABLED"] == "False"
    home = pairs["SASFORMER_HOME"]
    assert any(home in v for v in args_of("VOLUME")), "SASFORMER_HOME must be a volume"
    from core.settings import Settings

    from .test_settings_table import env_names

    settings_env = {e for n, f in Settings.model_fields.items() for e in env_names(n, f)}
    unknown = sorted(k for k in pairs if k.startswith("SASFORMER_") and k not in settings_env)
    assert not unknown, f"ENV names that are no setting: {unknown}"


def variant_script() -> str:
    (run,) = [r for r in args_of("RUN") if "VARIANT" in r and "torch" in r]
    return run


@pytest.mark.parametrize("variant", ["cpu", "cuda"])
def test_variant_branch_installs_pinned_torch(variant: str, tmp_path: Path) -> None:
    """The RUN that installs torch, executed by sh with ``pip`` stubbed: what each VARIANT would install."""
    defaults = dict(a.split("=", 1) for a in args_of("ARG") if "=" in a)
    assert defaults.get("VARIANT") in ("cpu", "cuda"), "ARG VARIANT needs a default of cpu or cuda"
    log = tmp_path / "pip.log"
    script = f'pip() {{ echo "$@" >> {log}; }}\n{variant_script()}'
    env = {"VARIANT": variant, "TORCH_CPU_INDEX": defaults["TORCH_CPU_INDEX"], "PATH": "/usr/bin:/bin"}
    subprocess.run(["sh", "-ec", script], env=env, check=True)
    (call,) = log.read_text().splitlines()
    words = shlex.split(call)
    pins = pyproject_pins()
    specs = [w for w in words if "==" in w]
    assert sorted(specs) == sorted([f"torch=={pins['torch']}", f"torchvision=={pins['torchvision']}"])
    if variant == "cpu":
        assert words[words.index("--index-url") + 1] == "https://download.pytorch.org/whl/cpu"
    else:
        assert "--index-url" not in words and "--extra-index-url" not in words


def test_unknown_variant_fails_the_build(tmp_path: Path) -> None:
    r = subprocess.run(["sh", "-ec", f"pip() {{ :; }}\n{variant_script()}"],
                       env={"VARIANT": "rocm", "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert r.returncode != 0 and "VARIANT" in r.stderr


def test_pins_match_pyproject() -> None:
    """Every name==version in the Dockerfile is pyproject's pin, and the rest comes from pyproject itself."""
    pins = pyproject_pins()
    text = " ".join(args_of("RUN"))
    found = re.findall(r"([A-Za-z0-9_.\-]+)==([0-9][^\s\"';]*)", text)
    assert found, "no pinned install in the Dockerfile"
    for name, version in found:
        assert pins.get(name.lower()) == version, f"Dockerfile pins {name}=={version}, pyproject.toml {pins.get(name)}"
    # the requirements are generated from pyproject.toml at build time: run that generator here
    (gen,) = re.findall(r'python -c "([^"]*tomllib[^"]*)"', text)
    out = subprocess.run(["python3", "-c", gen], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split() == PYPROJECT["project"]["dependencies"]
    assert "pip install -r /tmp/requirements.txt" in text
    assert re.search(r"pip install --no-deps -e \.", text), "the project is installed like bootstrap.sh (editable)"
    assert not re.search(r"pip install(?![^&;]*(-r |--no-deps|==))[^&;]*\s[a-z][\w\-]*(\s|$)", text), \
        "an unpinned package is installed"


def test_no_secrets_baked_in() -> None:
    text = DOCKERFILE.read_text()
    assert not re.search(r"(TOKEN|PASSWORD|SECRET|API_KEY)\w*\s*=", text, re.I), "a secret-like assignment"
    for kind in ("ENV", "ARG"):
        for a in args_of(kind):
            for name in re.findall(r"(\w+)=", a) or [a.split()[0]]:
                assert not re.search(r"TOKEN|PASSWORD|SECRET|KEY|DATABASE_URL|REDIS_URL", name, re.I), (kind, name)
    assert not any(".env" in c.split() for c in args_of("COPY"))


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def ignored(path: str) -> bool:
    """Docker's rule for these patterns: a path is excluded when it or one of its parents matches."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    result = False
    for pat in dockerignore():
        neg = pat.startswith("!")
        pat = pat.lstrip("!")
        variants = [pat, pat[3:]] if pat.startswith("**/") else [pat]
        if any(fnmatch.fnmatchcase(p, v) for p in prefixes for v in variants):
            result = not neg
    return result


@pytest.mark.parametrize("path", [".git/HEAD", ".venv/bin/python", "data/db.sqlite", "runs/m0/model.safetensors",
                                  "weights/mit_b0.pth", "model/x.safetensors", "checkpoint.pt", ".env",
                                  "backend/__pycache__/app.cpython-311.pyc", "artifacts/a.png", "shared/data/x"])
def test_dockerignore_keeps_out(path: str) -> None:
    assert ignored(path)


def test_copied_paths_exist_and_are_in_the_context() -> None:
    copied = []
    for args in args_of("COPY"):
        words = [w for w in args.split() if not w.startswith("--")]
        copied += words[:-1]
    for src in copied:
        assert (ROOT / src).exists(), f"COPY {src}: no such file"
        assert not ignored(src), f"COPY {src}: excluded by .dockerignore"
    # every package the project installs is copied (pyproject's packages.find include patterns)
    for pattern in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert pattern.rstrip("*") in copied, f"package {pattern} is not copied into the image"
    readme = PYPROJECT["project"]["readme"]
    assert readme in copied, "pip install needs the readme named by pyproject.toml"
