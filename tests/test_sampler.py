"""The CPU sampler against real processes (and a real cgroup where root has one): a process
burning half a core reads as half a core, a part that ends reads as null, and the result has
exactly the shape the analysis reads. Burns CPU: run under the shared lock."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import textwrap
import time

import pytest
from locust.env import Environment

from loadtest.harness.sampler import CpuSampler, Series, slots
from loadtest.stack import processes
from loadtest.stack.base import StackError
from loadtest.stack.limits import Limits, ReplicaCgroups

# Half a core, whatever else runs: in each 100 ms, 50 ms of this process's own CPU time.
HALF_CORE = """
    import time
    end = time.monotonic() + 30
    while time.monotonic() < end:
        period = time.monotonic()
        busy = time.process_time()
        while time.process_time() - busy < 0.05:
            pass
        time.sleep(max(0.0, period + 0.1 - time.monotonic()))
"""
SPIN = "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end: pass\n"


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def _values(series: list) -> list[float]:
    return [v for v in series if v is not None]


def _run(sampler: CpuSampler, seconds: float) -> dict:
    sampler.start()
    try:
        time.sleep(seconds)  # gevent's, under Locust's monkey patching: the greenlet runs
    finally:
        sampler.stop()
    return sampler.result()


@pytest.mark.process
@pytest.mark.slow  # real CPU over seconds
def test_half_a_core_in_a_child_reads_as_half(tmp_path):
    """The part's root is a shell; the burner is its child: children count."""
    shell = subprocess.Popen(["sh", "-c", f"{sys.executable} -c \"$0\"; true",
                              textwrap.dedent(HALF_CORE)])
    idle = subprocess.Popen(["sleep", "30"])
    try:
        sampler = CpuSampler(lambda: {"burner": [shell.pid], "sleeper": [idle.pid]})
        result = _run(sampler, 5.2)
    finally:
        for proc in (shell, idle):
            processes.stop(proc, timeout=2)
            proc.wait(5)
    burner = _values(result["parts"]["burner"])
    print(f"burner {burner}; sleeper {result['parts']['sleeper']}; "
          f"{1000 * sampler.own_cpu_s / sampler.readings:.2f} ms CPU per reading")
    assert len(burner) >= 4
    assert abs(statistics.median(burner) - 0.5) <= 0.15, burner
    assert all(v <= 0.02 for v in _values(result["parts"]["sleeper"]))
    assert len(_values(result["parts"]["sleeper"])) == len(burner)


@pytest.mark.process
@pytest.mark.slow  # real CPU over seconds
def test_a_part_that_ends_becomes_null_and_a_late_one_starts_null(tmp_path):
    first = subprocess.Popen(_python(HALF_CORE))
    dropped = subprocess.Popen(["sleep", "30"])
    late = subprocess.Popen(["sleep", "30"])
    started = time.monotonic()

    def parts() -> dict[str, list[int]]:
        elapsed = time.monotonic() - started
        out = {"replica:hello-1": [first.pid]}
        if elapsed < 2.5:
            out["replica:hello-2"] = [dropped.pid]   # leaves the list: scaled down
        else:
            out["replica:hello-3"] = [late.pid]      # joins the list: scaled up
        return out

    try:
        sampler = CpuSampler(parts)
        sampler.start()
        time.sleep(2.5)
        processes.stop(first, timeout=2)             # dies, still listed
        first.wait(5)
        time.sleep(3.2)
        sampler.stop()
    finally:
        for proc in (first, dropped, late):
            processes.stop(proc, timeout=2)
    result = sampler.result()
    n = len(result["idle"])
    one, two, three = (result["parts"][f"replica:hello-{i}"] for i in (1, 2, 3))
    print(one, two, three, sep="\n")
    assert n >= 5
    assert one[0] is not None and one[1] is not None
    assert all(v is None for v in one[3:]), "after it died"
    assert two[0] is not None and all(v is None for v in two[3:]), "after it left the list"
    assert three[:3] == [None] * 3, "before it existed"
    assert _values(three[3:]), "once it was there"


@pytest.mark.process
@pytest.mark.slow  # real CPU over seconds
def test_a_replica_in_a_cgroup_is_read_from_its_group(tmp_path):
    if os.geteuid() != 0:
        print("skipped: cgroups need root")
        pytest.skip("cgroups need root")
    cgroups = ReplicaCgroups("pytest sampler", Limits(cpus=0.5, memory_bytes=256 * 2**20))
    try:
        cgroups.preflight()
    except StackError as exc:
        print(f"skipped: {exc}")
        pytest.skip(str(exc))
    try:
        proc = processes.spawn(_python(SPIN), tmp_path / "spin.log",
                               preexec=cgroups.prepare("hello-1"))
        sampler = CpuSampler(lambda: {"replica:hello-1": [proc.pid]}, cgroups=cgroups)
        result = _run(sampler, 4.2)
        periods_throttled = cgroups.sample("hello-1").nr_throttled
        processes.stop(proc, timeout=2)
    finally:
        cgroups.close()
    used = _values(result["parts"]["replica:hello-1"])
    throttled = _values(result["throttled_s"]["hello-1"])
    print(f"used {used}, throttled {throttled}, {periods_throttled} periods throttled")
    assert len(used) >= 3 and abs(statistics.median(used) - 0.5) <= 0.15
    # The kernel's throttled time, as it counts it: about 0.5 s a second here when the
    # machine is quiet, but once 0.0 for 4 s while the group was held at its quota on a
    # busy machine (Linux 6.18); the count of throttled periods did not miss it.
    assert len(throttled) == len(used) and all(v >= 0 for v in throttled)
    assert periods_throttled >= 10
    assert result["limits"] == {"hello-1": {"cpus": 0.5, "request": 0.5,
                                            "memory_bytes": 256 * 2**20}}


@pytest.mark.process
@pytest.mark.slow  # real CPU over seconds
def test_the_result_has_exactly_the_shape_the_analysis_reads():
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        sampler = CpuSampler(lambda: {"generator": [os.getpid()], "store": [sleeper.pid]})
        environment = Environment()
        sampler.register(environment)
        environment.events.cpu_warning.fire(environment=environment, cpu_usage=97.25)
        result = _run(sampler, 2.2)
    finally:
        processes.stop(sleeper, timeout=2)
    assert list(result) == ["t0", "interval_s", "cores", "parts", "limits", "throttled_s",
                            "idle", "locust_cpu_warnings"]
    assert isinstance(result["t0"], float) and abs(result["t0"] - time.time()) < 10
    assert result["interval_s"] == 1.0 and result["cores"] == os.cpu_count()
    n = len(result["idle"])
    assert n == 2
    assert set(result["parts"]) == {"generator", "store"}
    for series in [*result["parts"].values(), result["idle"]]:
        assert len(series) == n
        assert all(v is None or (isinstance(v, float) and math.isfinite(v) and v >= 0)
                   for v in series)
    assert all(0 <= v <= result["cores"] * 1.05 for v in result["idle"])
    assert result["limits"] == {} and result["throttled_s"] == {}
    assert len(result["locust_cpu_warnings"]) == 1
    warning = result["locust_cpu_warnings"][0]
    assert set(warning) == {"t", "cpu_percent"} and warning["cpu_percent"] == 97.2
    json.dumps(result, allow_nan=False)  # plain JSON: no NaN, no numpy


def test_a_late_reading_fills_every_interval_it_closes():
    assert slots(100.0, 1.0, 0, 101.02) == 1
    assert slots(100.0, 1.0, 1, 103.4) == 2     # held up: closes intervals 1 and 2
    assert slots(100.0, 1.0, 3, 103.6) == 1     # early: still one, never zero
    series = Series(2)
    series.put(2, 0.5)
    series.put(5, 0.25)                         # away for 3 and 4
    assert series.to_list(7) == [None, None, 0.5, None, None, 0.25, None]


@pytest.mark.process
@pytest.mark.slow  # real CPU over seconds
def test_a_failing_parts_function_keeps_the_last_parts(tmp_path):
    sleeper = subprocess.Popen(["sleep", "30"])
    calls = []

    def parts() -> dict[str, list[int]]:
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("the stack is busy")
        return {"store": [sleeper.pid]}

    try:
        result = _run(CpuSampler(parts), 2.2)
    finally:
        processes.stop(sleeper, timeout=2)
    assert len(calls) >= 3 and len(_values(result["parts"]["store"])) == 2


def test_interval_must_be_positive():
    with pytest.raises(ValueError):
        CpuSampler(dict, interval=0)
