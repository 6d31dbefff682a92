"""What the distribution installs: the hello app under a name no user's package has.

The harness runs the user's app in its own environment, and ``app`` is the likeliest name
of the user's package: the hello app (folder ``app/``) installs as ``scalecheck_hello``, and
nothing the harness starts puts the repo root (where ``app/`` is) on a child's path.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port

#: The user's own package named app: a page that says whose it is, on $PORT.
USER_APP = {
    "__init__.py": "WHO = 'the user'\n",
    "__main__.py": (
        "import http.server, os\n"
        "from app import WHO\n"
        "class Page(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200)\n"
        "        self.end_headers()\n"
        "        self.wfile.write(f'app of {WHO}'.encode())\n"
        "    def log_message(self, *args):\n"
        "        pass\n"
        "http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), Page).serve_forever()\n"
    ),
}


def _user_project(tmp_path: Path) -> Path:
    """A user's project holding its own package ``app``."""
    project = tmp_path / "project"
    (project / "app").mkdir(parents=True)
    for name, text in USER_APP.items():
        (project / "app" / name).write_text(text)
    return project


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, **extra}


def test_the_package_list_is_the_package_folders():
    """pyproject lists the packages by hand (packages.find cannot rename app/): a new
    folder left out of the list would be missing from a wheel, though not from -e."""
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {"scalecheck_hello": "app"}
    folders = {".".join(p.parent.relative_to(ROOT).parts)
               for p in (ROOT / "loadtest").rglob("__init__.py")}
    assert sorted(config["packages"]) == sorted(folders | {"scalecheck_hello"})
    assert (ROOT / "app" / "__init__.py").is_file()


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", line.strip(), maxsplit=1)[0].lower()
            for line in requirements if line.strip() and not line.lstrip().startswith("#")}


def test_the_shops_web_stack_is_an_extra_not_a_dependency():
    """examples/shop is an app that is not ours: what it needs beyond the harness's own
    dependencies is the extra ``shop`` (make setup installs .[dev,shop]), nothing more."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = _names(project["dependencies"])
    shop = _names((ROOT / "examples" / "shop" / "requirements.txt").read_text().splitlines())
    assert _names(project["optional-dependencies"]["shop"]) == shop - core
    assert {"starlette", "uvicorn", "uvloop", "httptools"} <= shop - core
    assert "dev,shop" in (ROOT / "Makefile").read_text()


@pytest.mark.process
def test_app_is_the_users_and_the_hello_app_is_scalecheck_hello(tmp_path):
    python = [sys.executable, "-c"]
    where = "import importlib, sys; print(importlib.import_module(sys.argv[1]).__file__)"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Installed, from anywhere: the hello app under its own name, and no `app` at all.
    hello = subprocess.run([*python, where, "scalecheck_hello"], capture_output=True,
                           text=True, cwd=elsewhere, env=_env(), timeout=60)
    assert hello.returncode == 0, hello.stderr
    assert Path(hello.stdout.strip()) == ROOT / "app" / "__init__.py"
    none = subprocess.run([*python, where, "app"], capture_output=True, text=True,
                          cwd=elsewhere, env=_env(), timeout=60)
    assert none.returncode == 1 and "No module named 'app'" in none.stderr
    # The user's own app, on PYTHONPATH: `import app` is theirs, and ours still imports.
    project = _user_project(tmp_path)
    theirs = subprocess.run([*python, where, "app"], capture_output=True, text=True,
                            cwd=elsewhere, env=_env(PYTHONPATH=str(project)), timeout=60)
    assert Path(theirs.stdout.strip()) == project / "app" / "__init__.py", theirs.stderr
    ours = subprocess.run([*python, "import scalecheck_hello.serve"], capture_output=True,
                          text=True, cwd=project, env=_env(PYTHONPATH=str(project)), timeout=60)
    assert ours.returncode == 0, ours.stderr


def _stack(project: Path, cwd: Path, env: dict[str, str], *args: object
           ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loadtest.stack", "--project-dir",
                           str(project), *map(str, args)],
                          capture_output=True, text=True, timeout=120, cwd=cwd, env=env)


def _page(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
        return resp.read().decode()


def test_a_users_app_package_and_the_hello_app_side_by_side(tmp_path, no_leftovers):
    """From the user's project (its own `app` in the working directory and on PYTHONPATH),
    the embedded stack serves the hello app; and the user's `app`, run by the harness from
    another directory, is the user's, not the repo's app/ (the detached stack's children
    inherit its PYTHONPATH, which used to start with the repo root)."""
    project = _user_project(tmp_path)
    env = _env(PYTHONPATH=str(project))
    port = free_port()
    try:
        up = _stack(project, project, env, "up", "-d", "--scale", "1", "--port", port)
        assert up.returncode == 0, up.stderr
        assert "Hello world!" in _page(port)
    finally:
        assert _stack(project, project, env, "down").returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    port = free_port()
    try:
        up = _stack(project, project, env, "up", "-d", "--port", port, "--app-dir", elsewhere,
                    "--app-cmd", f"{sys.executable} -m app", "--health-path", "/")
        assert up.returncode == 0, up.stderr
        assert _page(port) == "app of the user"
    finally:
        assert _stack(project, project, env, "down").returncode == 0
