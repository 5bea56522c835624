"""Task 1: the Dockerfile and .dockerignore, read without building (hadolint and our checks)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from labs.lab06_docker.tests.dockerfile import Stage, copy_sources, ignored
from labs.lab06_docker.tests.engine import INSTALL

TASK = "1. Dockerfile"
HADOLINT = Path(sys.executable).with_name("hadolint")

# A pinned slim Python: a minor version at least (3.11, 3.11.9), the slim variant, optionally
# a Debian release and a digest. `python:latest`, `python:3` and full images are not pinned.
PINNED_SLIM = re.compile(
    r"^(docker\.io/(library/)?)?python:3\.\d+(\.\d+)?-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?$"
)
# Files a dependency layer may copy before the install: the dependency list, nothing else.
DEPENDENCY_FILES = re.compile(
    r"(^|/)(requirements[^/]*\.(txt|in)|pyproject\.toml|uv\.lock|poetry\.lock|constraints[^/]*\.txt)$"
)
SECRET_NAME = re.compile(
    r"(PASSWORD|PASSWD|PASS\b|_PWD\b|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL)", re.I
)
# A probe whose failure is turned into success: the container is `healthy` whatever happens.
ALWAYS_HEALTHY = re.compile(r"\|\|\s*(exit\s+0\b|true\b|:(?!\S))|;\s*exit\s+0\b")
# A RUN that writes an env file or a password URL into a layer.
RUN_SECRET = re.compile(r"(>>?\s*\S*\.env\b|://[^/\s:@]+:[^/\s@]+@)")
URL_WITH_PASSWORD = re.compile(r"://[^/\s:@]+:[^/\s@]+@")
# http://127.0.0.1:8000/healthz in a HEALTHCHECK (no port: 80 for http, 443 for https).
HEALTHZ_URL = re.compile(r"(?P<scheme>https?)://[^/:'\"\s]+(?::(?P<port>\d+))?/healthz")
# The API's port when neither ENV PORT nor EXPOSE says (app/config.py's default).
DEFAULT_APP_PORT = 8000


def external_bases(stages: list[Stage]) -> list[Stage]:
    """Stages whose FROM is an image, not an earlier stage."""
    names = {s.name for s in stages if s.name}
    return [s for s in stages if s.base not in names]


def listening_port(stage: Stage) -> int:
    """The API's port in a stage: the last ENV PORT=..., else the first EXPOSE, else 8000."""
    for ins in reversed(stage.all("ENV")):
        if m := re.search(r"(?:^|\s)PORT[= ](\d+)\b", ins.args):
            return int(m.group(1))
    for ins in stage.all("EXPOSE"):
        if m := re.match(r"(\d+)", ins.args):
            return int(m.group(1))
    return DEFAULT_APP_PORT


@pytest.mark.points(2, task=TASK)
def test_hadolint_finds_no_errors_or_warnings(dockerfile_text: str, stages: list[Stage]) -> None:
    proc = subprocess.run(
        [str(HADOLINT), "-f", "json", "--no-fail", "-"],
        input=dockerfile_text,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.stdout.strip().startswith("["), f"hadolint did not run: {proc.stderr.strip()}"
    findings = [f for f in json.loads(proc.stdout) if f["level"] in ("error", "warning")]
    assert not findings, (
        "hadolint: "
        + "; ".join(f"line {f['line']} {f['code']}: {f['message']}" for f in findings[:4])
        + (" (rules: https://github.com/hadolint/hadolint#rules)" if findings else "")
    )


@pytest.mark.points(1, task=TASK)
def test_base_image_is_a_pinned_slim_python(stages: list[Stage]) -> None:
    for stage in external_bases(stages):
        assert PINNED_SLIM.match(stage.base), (
            f"line {stage.line}: FROM {stage.base}: start from a pinned slim Python image, "
            "e.g. python:3.11-slim-bookworm (never latest or a bare major version)"
        )


@pytest.mark.points(2, task=TASK)
def test_multi_stage_build(stages: list[Stage], final_stage: Stage) -> None:
    assert len(stages) >= 2, (
        "the Dockerfile has one stage: install the dependencies in a build stage "
        "(FROM ... AS builder) and copy only the result into the final stage"
    )
    earlier = {s.name for s in stages[:-1] if s.name} | {str(i) for i in range(len(stages) - 1)}
    copies = [i for i in final_stage.all("COPY") if i.flags.get("from") in earlier]
    assert copies, (
        "the final stage copies nothing from the build stage: "
        "COPY --from=builder the virtual environment (or the wheels) it built"
    )


@pytest.mark.points(2, task=TASK)
def test_dependencies_are_installed_before_the_code_is_copied(stages: list[Stage]) -> None:
    installs = [(stage, i) for stage in stages for i in stage.all("RUN") if INSTALL.search(i.args)]
    assert installs, (
        "no RUN installs the dependencies (pip install -r requirements.txt, or uv sync)"
    )
    for stage, install in installs:
        for ins in stage.instructions:
            if ins is install:
                break
            if ins.keyword in ("COPY", "ADD") and "from" not in ins.flags:
                extra = [src for src in copy_sources(ins) if not DEPENDENCY_FILES.search(src)]
                assert not extra, (
                    f"{ins} comes before the dependency install ({install}): copy only "
                    "requirements.txt (or pyproject.toml + uv.lock) before it, the code after, "
                    "so that a code change does not reinstall every dependency"
                )


@pytest.mark.points(2, task=TASK)
def test_the_app_runs_as_a_non_root_user(final_stage: Stage) -> None:
    users = final_stage.all("USER")
    assert users, "the final stage has no USER: create a user and switch to it before CMD"
    user = users[-1].args.split(":")[0].strip()
    assert user not in ("root", "0"), f"{users[-1]}: the last USER must not be root"


@pytest.mark.points(1, task=TASK)
def test_the_image_has_a_healthcheck(final_stage: Stage) -> None:
    checks = final_stage.all("HEALTHCHECK")
    assert checks, (
        "the final stage has no HEALTHCHECK: probe GET /healthz "
        "(slim images have no curl: python -c ...)"
    )
    assert "CMD" in checks[-1].args.split(), f"{checks[-1]}: a HEALTHCHECK needs a CMD to run"
    assert "/healthz" in checks[-1].args, (
        f"{checks[-1]}: probe the API's GET /healthz, so that `healthy` means it answers HTTP"
    )
    assert not ALWAYS_HEALTHY.search(checks[-1].args), (
        f"{checks[-1]}: the probe turns a failure into success (`|| exit 0`, `|| true`), so the "
        "container is `healthy` even when the API does not answer: let the probe's exit code "
        "through"
    )
    # The port the probe asks must be the one the API listens on, or the container is never
    # healthy (and compose never starts what waits for it).
    app_port = listening_port(final_stage)
    for url in HEALTHZ_URL.finditer(checks[-1].args):
        port = int(url.group("port") or (443 if url.group("scheme") == "https" else 80))
        assert port == app_port, (
            f"{checks[-1]}: the probe asks port {port}, the API listens on {app_port} "
            f"(PORT / EXPOSE): probe http://127.0.0.1:{app_port}/healthz"
        )
    # Slim images have no curl or wget: a probe that runs one fails for ever, unless this
    # stage installs the tool.
    probe = checks[-1].args.split("CMD", 1)[-1]
    for tool in ("curl", "wget"):
        if re.search(rf"(^|[\s\"'\[]){tool}\b", probe):
            installs = [i for i in final_stage.all("RUN") if re.search(rf"\b{tool}\b", i.args)]
            assert installs, (
                f"{checks[-1]}: the final stage has no {tool} (slim images do not), so this "
                "probe always fails: probe with Python, "
                '["python", "-c", "import urllib.request as u; u.urlopen(...)"]'
            )


@pytest.mark.points(1, task=TASK)
def test_cmd_is_in_exec_form(final_stage: Stage) -> None:
    cmds = final_stage.all("CMD")
    assert cmds, 'the final stage has no CMD: e.g. CMD ["python", "-m", "app"]'
    for ins in [*cmds[-1:], *final_stage.all("ENTRYPOINT")[-1:]]:
        assert ins.exec_form, (
            f'{ins}: write it in exec form, CMD ["python", "-m", "app"]: in shell form '
            "`sh -c` is PID 1 and SIGTERM never reaches the app (no graceful stop)"
        )


@pytest.mark.points(2, task=TASK)
def test_no_secret_in_the_dockerfile(stages: list[Stage], dockerignore: list[str]) -> None:
    for stage in stages:
        for ins in stage.instructions:
            if ins.keyword in ("ENV", "ARG"):
                assert not SECRET_NAME.search(ins.args) and not URL_WITH_PASSWORD.search(
                    ins.args
                ), (
                    f"{ins}: a secret in ENV or ARG stays in the image (docker history shows "
                    "it): pass passwords at run time, from .env through compose"
                )
            if ins.keyword == "RUN":
                assert not RUN_SECRET.search(ins.args), (
                    f"{ins}: a RUN that writes an .env file or a password into the image keeps "
                    "it in a layer for anyone who pulls it: pass passwords at run time, from "
                    ".env through compose"
                )
            if ins.keyword in ("COPY", "ADD") and "from" not in ins.flags:
                for src in copy_sources(ins):
                    name = src.rstrip("/").rsplit("/", 1)[-1]
                    assert not name.startswith(".env"), f"{ins}: never copy .env into the image"
                    if name in (".", "*") or src.endswith("/."):
                        assert ignored(dockerignore, ".env"), (
                            f"{ins} copies the whole folder, and .dockerignore does not exclude "
                            ".env: its passwords would end up in the image"
                        )


@pytest.mark.points(1, task=TASK)
def test_dockerignore_keeps_clutter_and_secrets_out(dockerignore: list[str]) -> None:
    for path, why in [
        (".env", "it holds the passwords"),
        (".venv/bin/python", "the image builds its own environment"),
        (".git/HEAD", "history is not part of the service"),
        ("app/__pycache__/main.cpython-311.pyc", "bytecode of your machine's Python"),
    ]:
        assert ignored(dockerignore, path), (
            f".dockerignore must exclude {path.split('/')[0]}: {why}"
        )
    for path in ("app/main.py", "requirements.txt"):
        assert not ignored(dockerignore, path), (
            f".dockerignore excludes {path}, which the image needs"
        )
