"""A Docker Engine for the Compose tests: use the running one, or start dockerd
(as root) for the session and stop it afterwards; build the images offline."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time

from tests.conftest import ROOT

SKIPPED: list[str] = []  # reasons, reported loudly at the end under CI=true


def _engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


class Engine:
    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.reason: str | None = None
        self.log: str | None = None  # dockerd's log, when this session started it

    def start(self) -> bool:
        if _engine_answers():
            return True
        if shutil.which("dockerd") is None:
            self.reason = "no Docker Engine: dockerd is not installed (apt-get install docker.io)"
            return False
        if os.geteuid() != 0:
            self.reason = "no Docker Engine running, and starting dockerd needs root"
            return False
        # Its log lasts as long as the engine does; kept only when it would not start.
        fd, self.log = tempfile.mkstemp(prefix="scalecheck-dockerd-", suffix=".log")
        with os.fdopen(fd, "ab") as log:
            self.proc = subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.reason = f"dockerd exited at start (code {self.proc.returncode}); " \
                              f"see {self.log}"
                self.proc, self.log = None, None
                return False
            if _engine_answers():
                return True
            time.sleep(0.5)
        self.reason = f"dockerd did not answer within 60 s; see {self.log}"
        self.log = None  # kept, for the reason above
        self.stop()
        return False

    def build_images(self) -> bool:
        env = {**os.environ, "PYTHON": os.environ.get("PYTHON", _venv_python())}
        proc = subprocess.run(["sh", "scripts/docker-images.sh"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=1200)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            self.reason = "could not build the images: " + " | ".join(tail)
            return False
        return True

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None
        if self.log is not None:
            os.unlink(self.log)
            self.log = None


def engine_for_module():
    """The body of each Docker test module's ``engine`` fixture: an engine with the images
    built; else the module fails under CI (skips elsewhere) with the reason, kept for the
    summary."""
    from tests.conftest import need

    eng = Engine()
    if not eng.start() or not eng.build_images():
        SKIPPED.append(eng.reason or "unknown")
        eng.stop()
        need("the Docker engine", eng.reason or "unknown")
    yield eng
    eng.stop()


def _venv_python() -> str:
    import sys

    return sys.executable


def compose_leftovers(project: str) -> list[str]:
    """Containers, networks and volumes Compose labelled as ``project``'s (none should stay
    after the harness's down)."""
    out = []
    for kind in ("ps -a", "network ls", "volume ls"):
        proc = subprocess.run(f"docker {kind} -q --filter label=com.docker.compose.project="
                              f"{project}", shell=True, capture_output=True, text=True)
        out += proc.stdout.split()
    return out
