"""Per-replica limits as real cgroups: the kernel holds a process to 0.2 CPU, OOM-kills it
past 64M, and nothing is left under /sys/fs/cgroup afterwards, whatever happened to the
harness. Needs root; run under the shared lock (it burns CPU)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from loadtest.stack import processes
from loadtest.stack.base import StackError
from loadtest.stack.limits import (
    CGROUP_ROOT,
    TOP,
    Limits,
    ReplicaCgroups,
    discover,
    keyed,
    limit_writes,
    parse_cpus,
    parse_memory,
    quota_us,
    sample_from,
)
from tests.conftest import ROOT

MiB = 2**20

# -- parsing and the files written: pure --------------------------------------------------


@pytest.mark.parametrize("text, cores", [("0.25", 0.25), ("250m", 0.25), ("2", 2.0),
                                         (" 1.5 ", 1.5), ("1m", 0.001), (0.5, 0.5)])
def test_parse_cpus(text, cores):
    assert parse_cpus(text) == pytest.approx(cores)


@pytest.mark.parametrize("text", ["", "abc", "0", "-1", "0.0001", "nan", "inf", "250 m", "1c"])
def test_parse_cpus_refuses_in_one_line(text):
    with pytest.raises(ValueError) as err:
        parse_cpus(text)
    assert "\n" not in str(err.value) and "250m" in str(err.value)


@pytest.mark.parametrize("text, size", [
    ("256M", 256 * MiB), ("256m", 256 * MiB), ("256MB", 256 * MiB), ("1G", 2**30),
    ("512Mi", 512 * MiB), ("1.5Gi", 3 * 2**29), ("268435456", 268435456), (67108864, 64 * MiB),
    ("64 Mi", 64 * MiB), ("65536k", 64 * MiB)])
def test_parse_memory(text, size):
    assert parse_memory(text) == size


@pytest.mark.parametrize("text", ["", "M", "256X", "-1G", "1e9", "1M", "5000000", "256 M B"])
def test_parse_memory_refuses_in_one_line(text):
    with pytest.raises(ValueError) as err:
        parse_memory(text)
    assert "\n" not in str(err.value)


def test_limits_request_defaults_to_the_limit_and_is_checked():
    assert Limits(cpus=0.5).request == 0.5
    assert Limits(cpus=0.5, cpu_request=0.25).request == 0.25
    assert Limits(memory_bytes=64 * MiB).request is None
    assert Limits(cpus=0.25, memory_bytes=256 * MiB).to_dict() == \
        {"cpus": 0.25, "request": 0.25, "memory_bytes": 256 * MiB}
    with pytest.raises(ValueError):
        Limits(cpus=0)
    with pytest.raises(ValueError):
        Limits(memory_bytes=1024)


def test_files_written_for_v1_and_v2():
    limits = Limits(cpus=0.25, memory_bytes=256 * MiB)
    assert limit_writes(1, limits) == [
        ("cpu", "cpu.cfs_period_us", "100000"), ("cpu", "cpu.cfs_quota_us", "25000"),
        ("memory", "memory.limit_in_bytes", str(256 * MiB)),
        ("memory", "memory.memsw.limit_in_bytes?", str(256 * MiB))]
    assert limit_writes(2, limits) == [
        ("cpu", "cpu.max", "25000 100000"), ("memory", "memory.max", str(256 * MiB)),
        ("memory", "memory.swap.max?", "0"), ("memory", "memory.oom.group?", "1")]
    assert limit_writes(2, Limits(cpus=0.001))[0][2] == "1000 100000"  # the kernel's minimum
    assert quota_us(2) == 200000


def test_samples_from_v1_and_v2_files():
    """The counters as the kernels print them (v2's formats from the kernel's cgroup-v2.rst:
    there is no v2 cpu or memory controller to read on this machine)."""
    v1 = sample_from(1, {
        "cpuacct.usage": "608546033\n",
        "cpu.stat": "nr_periods 31\nnr_throttled 30\nthrottled_time 2213905126\n"
                    "nr_bursts 0\nburst_time 0\n",
        "memory.usage_in_bytes": "253952\n",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"})
    assert v1.cpu_seconds == pytest.approx(0.608546033)
    assert v1.throttled_seconds == pytest.approx(2.213905126)
    assert (v1.nr_throttled, v1.memory_bytes, v1.oom_kills) == (30, 253952, 2)
    v2 = sample_from(2, {
        "cpu.stat": "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n"
                    "nr_periods 40\nnr_throttled 12\nthrottled_usec 750000\n",
        "memory.current": "67108864\n",
        "memory.events": "low 0\nhigh 0\nmax 14\noom 1\noom_kill 1\noom_group_kill 0\n"})
    assert (v2.cpu_seconds, v2.throttled_seconds, v2.nr_throttled) == (1.5, 0.75, 12)
    assert (v2.memory_bytes, v2.oom_kills) == (64 * MiB, 1)
    # A group without the cpu controller still counts usage; without memory, no memory.
    bare = sample_from(2, {"cpu.stat": "usage_usec 10\n", "memory.current": None,
                           "memory.events": None})
    assert bare.cpu_seconds == 1e-5 and bare.throttled_seconds is None
    assert bare.memory_bytes is None and bare.oom_kills is None
    assert keyed("a 1\nb x\n\nc 3") == {"a": 1, "c": 3}


# -- real cgroups ----------------------------------------------------------------------------

def _layouts():
    """The cgroup trees to test on: this machine's, and a v2 one if it has one with cpu."""
    params = []
    layout = discover(CGROUP_ROOT)
    if layout is not None:
        params.append(pytest.param(CGROUP_ROOT, id=f"v{layout.version}"))
    other = CGROUP_ROOT / "unified"
    v2 = discover(other) if layout and layout.version == 1 else None
    if v2 is not None and v2.version == 2 and "cpu" in v2.dirs:
        params.append(pytest.param(other, id="v2-unified"))
    else:
        params.append(pytest.param(None, id="v2", marks=pytest.mark.skip(
            reason="no cgroup v2 tree with the cpu and memory controllers here (they are "
                   "bound to v1); v2 is covered by the file-format tests above")))
    return params


def _need_root_cgroups(root: Path | None, limits: Limits) -> ReplicaCgroups:
    if root is None:
        pytest.skip("no cgroup tree")
    if os.geteuid() != 0:
        print("skipped: cgroups need root")
        pytest.skip("cgroups need root")
    cgroups = ReplicaCgroups("pytest limits", limits, root=root)
    try:
        cgroups.preflight()
    except StackError as exc:
        print(f"skipped: {exc}")
        pytest.skip(str(exc))
    return cgroups


def _ours_left(root: Path) -> list[str]:
    """Every directory of ours still under the cgroup tree."""
    return sorted(str(p) for p in root.glob(f"*/{TOP}")) + \
        sorted(str(p) for p in root.glob(f"{TOP}"))


def _spawn(cgroups: ReplicaCgroups, name: str, code: str, tmp_path: Path) -> subprocess.Popen:
    return processes.spawn([sys.executable, "-c", textwrap.dedent(code)],
                           tmp_path / f"{name}.log", preexec=cgroups.prepare(name))


BURN_TWO = """
    import os, time
    os.fork()                      # two processes, both in the group: the limit is shared
    end = time.monotonic() + 60
    while time.monotonic() < end:
        pass
"""


@pytest.mark.parametrize("root", _layouts())
@pytest.mark.process
def test_cpu_limit_holds_and_throttles(tmp_path, root):
    cgroups = _need_root_cgroups(root, Limits(cpus=0.2))
    proc = None
    try:
        proc = _spawn(cgroups, "hello-1", BURN_TWO, tmp_path)
        time.sleep(0.5)
        before, t0 = cgroups.sample("hello-1"), time.monotonic()
        time.sleep(3)
        after, t1 = cgroups.sample("hello-1"), time.monotonic()
        used = (after.cpu_seconds - before.cpu_seconds) / (t1 - t0)
        print(f"used {used:.3f} CPU under a 0.2 limit; throttled "
              f"{after.throttled_seconds - before.throttled_seconds:.2f}s")
        assert 0.1 < used <= 0.2 * 1.1, used
        assert after.throttled_seconds > before.throttled_seconds
        assert after.nr_throttled > before.nr_throttled
        # Both processes are in the group, born there (joined before exec).
        members = (cgroups.layout.dirs["cpu"] / TOP / cgroups.parent_name / "hello-1" /
                   "cgroup.procs").read_text().split()
        assert len(members) == 2 and str(proc.pid) in members
        assert not cgroups.oom_killed("hello-1")
    finally:
        if proc is not None:
            processes.stop(proc, timeout=2)
        cgroups.close()
    assert cgroups.sample("hello-1") is None
    assert _ours_left(root) == []


@pytest.mark.parametrize("root", _layouts())
@pytest.mark.process
def test_past_the_memory_limit_the_kernel_kills_and_we_know(tmp_path, root):
    cgroups = _need_root_cgroups(root, Limits(memory_bytes=64 * MiB))
    try:
        proc = _spawn(cgroups, "hello-1", """
            held = []
            for _ in range(512):            # up to 512 MiB, each page written
                held.append(b"x" * 2**20)
            """, tmp_path)
        assert proc.wait(30) == -signal.SIGKILL
        assert cgroups.oom_killed("hello-1")
        assert cgroups.sample("hello-1").memory_bytes <= 64 * MiB
        calm = _spawn(cgroups, "hello-2", "held = b'x' * 2**24", tmp_path)
        assert calm.wait(30) == 0 and not cgroups.oom_killed("hello-2")
        cgroups.release("hello-1")
        assert cgroups.oom_killed("hello-1"), "known after the group is gone too"
    finally:
        cgroups.close()
    assert _ours_left(root) == []


@pytest.mark.process
def test_close_kills_what_is_left_and_is_safe_twice(tmp_path):
    cgroups = _need_root_cgroups(CGROUP_ROOT, Limits(cpus=0.5, memory_bytes=128 * MiB))
    sleeper = processes.spawn(["sleep", "60"], tmp_path / "s.log",
                              preexec=cgroups.prepare("hello-1"))
    cgroups.prepare("hello-2")
    assert sorted(cgroups.names()) == ["hello-1", "hello-2"]
    started = time.monotonic()
    cgroups.close()
    cgroups.close()
    assert sleeper.wait(5) == -signal.SIGKILL
    assert time.monotonic() - started < 5
    assert _ours_left(CGROUP_ROOT) == []


HARNESS = """
import sys, time
from pathlib import Path
from loadtest.stack import processes
from loadtest.stack.limits import Limits, ReplicaCgroups
cgroups = ReplicaCgroups("pytest harness", Limits(cpus=0.5))
cgroups.preflight()
# A replica whose child left its process group (setsid) and ignores SIGTERM: neither the
# parent-death signal nor the watchdog (which ends groups) reaches that child, and it
# stays in the replica's cgroup.
escaped = Path(sys.argv[2]).with_suffix(".pid")
proc = processes.spawn(["sh", "-c", f"trap '' TERM; setsid sleep 60 & echo $! > {escaped}; wait"],
                       Path(sys.argv[2]), preexec=cgroups.prepare("hello-1"))
deadline = time.monotonic() + 10
while not escaped.is_file() or not escaped.read_text().strip():
    assert time.monotonic() < deadline
    time.sleep(0.05)
# An ordinary one: the parent-death signal still holds with a preexec.
plain = processes.spawn(["sleep", "60"], Path(sys.argv[2]), preexec=cgroups.prepare("hello-2"))
print(cgroups.parent_name, escaped.read_text().strip(), plain.pid, flush=True)
if sys.argv[1] == "wait":
    time.sleep(60)
elif sys.argv[1] == "raise":
    raise RuntimeError("the harness crashed")
"""


def _harness(mode: str, tmp_path: Path) -> tuple[subprocess.Popen, str, int, int]:
    proc = subprocess.Popen([sys.executable, "-c", HARNESS, mode, str(tmp_path / "r.log")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    parent, stubborn, plain = proc.stdout.readline().split()
    return proc, parent, int(stubborn), int(plain)


def _group_dirs(parent: str) -> list[Path]:
    return [p for p in CGROUP_ROOT.glob(f"*/{TOP}/{parent}") if p.is_dir()]


@pytest.mark.parametrize("mode", ["exit", "raise"])
@pytest.mark.process
def test_a_harness_that_ends_without_close_leaves_nothing(tmp_path, mode):
    _need_root_cgroups(CGROUP_ROOT, Limits(cpus=0.5)).close()
    proc, parent, stubborn, plain = _harness(mode, tmp_path)
    assert proc.wait(20) == (0 if mode == "exit" else 1)
    assert _group_dirs(parent) == []
    assert not _alive(stubborn) and not _alive(plain)


@pytest.mark.process
def test_after_sigkill_of_the_harness_the_next_preflight_cleans(tmp_path):
    """SIGKILL leaves the groups (no code runs); a replica's child that left its process
    group is beyond the watchdog, so it is still in there; the next run's preflight
    kills it and removes the groups of the dead run."""
    _need_root_cgroups(CGROUP_ROOT, Limits(cpus=0.5)).close()
    proc, parent, replica, plain = _harness("wait", tmp_path)
    proc.kill()
    proc.wait(10)
    deadline = time.monotonic() + 10
    while _alive(plain) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(plain), "the parent-death signal ended the ordinary replica"
    assert _group_dirs(parent), "SIGKILL leaves the groups behind"
    assert _alive(replica), "the escaped child is still in its group"
    cgroups = ReplicaCgroups("pytest next run", Limits(cpus=0.5))
    cgroups.preflight()
    try:
        assert _group_dirs(parent) == []
        deadline = time.monotonic() + 5
        while _alive(replica) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(replica)
    finally:
        cgroups.close()
    assert _ours_left(CGROUP_ROOT) == []


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# -- without the rights ----------------------------------------------------------------------

PREFLIGHT = """
import os, sys
from loadtest.stack.base import StackError
from loadtest.stack.limits import Limits, ReplicaCgroups
if sys.argv[2:] == ["nobody"]:  # after the imports: nobody may not read the venv
    os.setgroups([]); os.setgid(65534); os.setuid(65534)
try:
    ReplicaCgroups("pytest", Limits(cpus=0.5, memory_bytes=2**28), root=sys.argv[1]).preflight()
except StackError as exc:
    print(exc)
    sys.exit(2)
"""


@pytest.mark.process
def test_not_root_is_one_line():
    """A real non-root user (nobody) against the real tree."""
    if os.geteuid() != 0:
        pytest.skip("needs root to become another user")
    proc = subprocess.run([sys.executable, "-c", PREFLIGHT, str(CGROUP_ROOT), "nobody"],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout.count("\n") == 1 and "permission denied" in proc.stdout
    assert "need root" in proc.stdout and proc.stderr == ""


@pytest.mark.process
def test_read_only_tree_is_one_line(tmp_path):
    """Simulated: the limiter pointed at a read-only bind mount of this machine's cgroup
    hierarchies (as an unprivileged container sees /sys/fs/cgroup), in a mount namespace of
    its own so that nothing leaks out."""
    layout = discover(CGROUP_ROOT)
    if os.geteuid() != 0 or layout is None or shutil.which("unshare") is None:
        pytest.skip("needs root, cgroups and unshare(1)")
    fake = tmp_path / "cgroup"
    binds = []
    if layout.version == 2:
        binds.append(f"mkdir -p {fake} && mount --bind -o ro {layout.root} {fake}")
    else:
        for hierarchy in layout.hierarchies():
            target = fake / hierarchy.name
            binds.append(f"mkdir -p {target} && mount --bind -o ro {hierarchy} {target}")
    script = " && ".join(binds) + f" && exec {sys.executable} -c '{PREFLIGHT}' {fake}"
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           script], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout.count("\n") == 1 and "read-only file system" in proc.stdout
    assert proc.stderr == ""


def test_missing_controller_is_one_line(tmp_path):
    """A tree without a memory controller (an empty directory stands for one)."""
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    with pytest.raises(StackError) as err:
        ReplicaCgroups("pytest", Limits(memory_bytes=2**28), root=tmp_path).preflight()
    assert "memory" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(StackError) as err:
        ReplicaCgroups("pytest", Limits(cpus=1), root=tmp_path / "nowhere").preflight()
    assert "no cgroup hierarchy" in str(err.value)
