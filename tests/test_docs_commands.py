"""Every command block of the README, docs/ and examples/*/README.md runs as written, from
the project's root, with its defaults; only its duration is shortened, by the environment
variable SCALECHECK_MAX_RUN_TIME (the plan's whole timeline compressed). A block that
cannot run says why beside it, and the reason is checked to still hold (tests/docblocks.py
has the syntax).

What "ran" means depends on the command: a Locust run must complete (status
``completed`` in its run.json; Locust itself exits 1 when some request failed, which a
demo of a faulty app means to show); ``analyze.py`` must reach a verdict (0, 1 or 3, and
say which); everything else must exit 0. Never a traceback, never exit 2.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.docblocks import Block, blocks

BLOCKS = blocks(ROOT)
MAX_RUN_TIME = "10s"
COMMAND_TIMEOUT = 600
DOCKER = re.compile(r"--stack (compose|swarm)|\bdocker\b|build-image\.sh|docker-images")
LOCUST = re.compile(r"(^|\s|/)locust\s+-f\s")
ANALYZE = re.compile(r"analyze\.py|scalecheck (analyze|check)")
VERDICT = re.compile(r"\b(PASS|FAIL|INCONCLUSIVE)\b")


def _env() -> dict:
    return {**os.environ, "SCALECHECK_MAX_RUN_TIME": MAX_RUN_TIME}


def _shell(command: str, cwd: Path, timeout: float = COMMAND_TIMEOUT
           ) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=_env())


def _runs(reports: Path) -> set[str]:
    return {p.name for p in reports.iterdir() if p.is_dir() and not p.is_symlink()} \
        if reports.is_dir() else set()


def _check(command: str, proc: subprocess.CompletedProcess, new_runs: set[str],
           reports: Path) -> None:
    said = f"`{command}` exited {proc.returncode}:\n{proc.stderr[-2500:]}\n{proc.stdout[-800:]}"
    assert "Traceback (most recent call last)" not in proc.stderr, said
    if LOCUST.search(command):
        assert proc.returncode in (0, 1), said
        assert len(new_runs) == 1, f"`{command}` made runs {new_runs}"
        run = json.loads((reports / new_runs.pop() / "run.json").read_text())
        assert run["status"] == "completed", (run["status"], run.get("error"), said)
    elif ANALYZE.search(command) and "--help" not in command:
        assert proc.returncode in (0, 1, 3), said
        assert VERDICT.search(proc.stdout), said
    else:
        assert proc.returncode == 0, said


def _prove(block: Block, what: str) -> None:
    assert block.why and block.holds, f"{block.name}: {what} needs a why and a holds"
    proof = _shell(block.holds, ROOT, timeout=60)
    assert proof.returncode == 0, (f"{block.name}: {what} because {block.why!r}, but that "
                                   f"no longer holds (`{block.holds}` exited "
                                   f"{proof.returncode}): run the block, or say why anew")
    print(f"{block.name}: {what}: {block.why} (still holds: `{block.holds}`)")


def test_every_block_is_collected_and_accounted_for():
    """The count printed is the README-command tests' coverage; every skip has a reason."""
    assert len(BLOCKS) >= 20, [b.name for b in BLOCKS]
    skipped = [b for b in BLOCKS if b.skip]
    lines = sum(len(b.skip_lines) for b in BLOCKS)
    print(f"{len(BLOCKS)} command blocks: {len(BLOCKS) - len(skipped)} run, "
          f"{len(skipped)} not run (each with its reason), {lines} single commands not run")
    for block in BLOCKS:
        assert block.commands(), f"{block.name}: an empty command block"
        if block.skip or block.skip_lines:
            assert block.why and block.holds, f"{block.name}: a skip needs why and holds"


@pytest.fixture(scope="module")
def docker_engine():
    """Started (and the images built) only when a block needs Docker."""
    from tests.docker_engine import Engine

    engines: list[Engine] = []

    def need() -> None:
        if engines:
            return
        from tests.conftest import need as require

        eng = Engine()
        if not eng.start() or not eng.build_images():
            eng.stop()
            require("the Docker engine", eng.reason or "unknown")
        engines.append(eng)

    yield need
    for eng in engines:
        eng.stop()


@pytest.mark.parametrize("block", BLOCKS, ids=[b.name for b in BLOCKS])
def test_block_runs_as_written(block: Block, docker_engine):
    if block.skip:
        _prove(block, "not run")
        return
    if block.skip_lines:
        _prove(block, f"not run: {', '.join(block.skip_lines)}")
    if DOCKER.search(block.text + block.before):
        if shutil.which("docker") is None and not os.environ.get("CI"):
            pytest.skip("the block needs Docker, which is not installed here")
        docker_engine()
    cwd = ROOT / block.cwd
    reports = cwd / "reports"
    if block.before:
        ready = _shell(block.before, cwd, timeout=300)
        assert ready.returncode == 0, f"before: {ready.stderr[-2000:]}"
    try:
        for command in block.runnable():
            before = _runs(reports)
            started = time.monotonic()
            proc = _shell(command, cwd)
            print(f"{block.name}: `{command[:100]}` → exit {proc.returncode} in "
                  f"{time.monotonic() - started:.0f} s")
            _check(command, proc, _runs(reports) - before, reports)
    finally:
        if block.after:
            _shell(block.after, cwd, timeout=300)


def test_the_option_reference_is_the_parser_s_own():
    """docs/reference.md is what `scalecheck options --markdown` prints, every option."""
    from loadtest.cli.main import options_markdown, options_parser

    parser = options_parser()
    text = (ROOT / "docs" / "reference.md").read_text()
    assert text == options_markdown(parser), "regenerate: scalecheck options --markdown"
    flags = [f for a in parser._actions for f in a.option_strings]
    assert len(flags) > 40 and all(f"`{f}" in text for f in flags)
