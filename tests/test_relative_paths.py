"""The user's path as typed: the harness started from the team's own folder, its Compose
or stack file and the run directory given as relative paths. Docker, Compose and Swarm
each read a relative path differently (a bind source, a volume name, Compose's own
directory), so every path the harness hands them must be absolute whatever was typed;
both failed at once before."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import LOCUSTFILE, ROOT, free_port
from tests.docker_engine import engine_for_module

engine = pytest.fixture(scope="module", name="engine")(engine_for_module)
OFFLINE = {"REDIS_IMAGE": "scalecheck/base:bookworm", "HAPROXY_IMAGE": "scalecheck/base:bookworm",
           "TRAEFIK_IMAGE": "scalecheck/traefik:latest"}


def _run_from(team: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [str(Path(sys.executable).parent / "locust"), "-f", str(LOCUSTFILE), "--headless",
           "--only-summary", "-u", "4", "-r", "4", "--scale-levels", "1,2", "--stage-time", "5s",
           "--min-steady", "2s", "--stack-port", str(free_port()),
           "--api-port", str(free_port()), *args]
    return subprocess.run(cmd, cwd=team, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **OFFLINE})


def _verdict(run_dir: Path) -> int:
    proc = subprocess.run([sys.executable, str(ROOT / "analyze.py"), str(run_dir)],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode in (0, 1, 3), proc.stderr[-1500:]
    return proc.returncode


@pytest.mark.docker
@pytest.mark.parametrize("stack, option, source", [
    ("compose", "--compose-file", ROOT / "compose" / "docker-compose.yml"),
    ("swarm", "--swarm-stack-file", ROOT / "compose" / "swarm-stack.yml"),
])
def test_a_team_folder_with_relative_paths(engine, tmp_path, stack, option, source):
    team = tmp_path / "team"
    team.mkdir()
    shutil.copy(source, team / "ours.yml")
    proc = _run_from(team, "--stack", stack, option, "ours.yml", "--run-dir", "runs/first")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = team / "runs" / "first"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "completed" and run["run_dir"] == str(run_dir)
    assert _verdict(run_dir) == 0
    assert (team / "ours.yml").read_bytes() == source.read_bytes()  # never modified


def test_the_default_and_a_relative_run_directory_on_the_embedded_stack(tmp_path):
    team = tmp_path / "team"
    team.mkdir()
    proc = _run_from(team, "--run-dir", "runs/one")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((team / "runs/one/run.json").read_text())["status"] == "completed"
    proc = _run_from(team)  # the default: reports/<time> under the folder it started in
    assert proc.returncode == 0, proc.stderr[-3000:]
    latest = (team / "reports" / "latest").resolve()
    assert latest.parent == (team / "reports").resolve()
    assert json.loads((latest / "run.json").read_text())["status"] == "completed"
