"""What limited throughput at each replica count, and the scaling efficiency judged only
where the replicas did. The CPU section is the harness sampler's format (run.json ``cpu``),
written here second by second; the last test measures real processes."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from loadtest.analysis.bottleneck import (
    attribute,
    bottleneck_findings,
    level_usage,
    level_windows,
    sample_indices,
    scaling_efficiency_checks,
    validate_cpu,
)
from loadtest.analysis.load import AnalysisInputError, load_run
from loadtest.analysis.summary import analyse
from loadtest.analysis.thresholds import Thresholds
from loadtest.contract.synth import SynthSpec, generate, write

T0 = 1_700_000_000.0
# A sweep 1 -> 2 -> 4 replicas, 20 s each, with a second of scale change between stages.
STAGES = [(1, 0.0, 19.0), (2, 20.0, 39.0), (4, 40.0, 59.0)]
HOSTS = {1: ["hello-1"], 2: ["hello-1", "hello-2"], 4: ["hello-1", "hello-2", "hello-3",
                                                        "hello-4"]}


def segments(stages=STAGES):
    return [{"index": i, "t_start": T0 + a + 0.3, "t_end": T0 + b + 0.7, "level": level,
             "short": False, "faults": []} for i, (level, a, b) in enumerate(stages)]


def levels(*efficiency):
    return [{"level": n, "rps": 100.0 * n * e, "scaling_efficiency": e}
            for n, e in zip((1, 2, 4), efficiency)]


def cpu_section(per_level: dict, limits=None, cores=2, seconds=60, **extra):
    """``per_level``: {level: {"generator": c, "balancer": c, "store": c, "replica": c,
    "throttled": s, "idle": c}} in cores, constant over each stage; replicas that do not
    run at a level are null there."""
    parts = {"generator": [], "balancer": [], "store": []}
    replicas = {h: [] for h in HOSTS[4]}
    throttled = {h: [] for h in HOSTS[4]}
    idle = []
    for second in range(seconds):
        level = max(lv for lv, a, _ in STAGES if second >= a)
        spec = per_level[level]
        for name in parts:
            parts[name].append(spec.get(name, 0.1))
        for host in HOSTS[4]:
            running = host in HOSTS[level]
            replicas[host].append(spec.get("replica", 0.1) if running else None)
            throttled[host].append(spec.get("throttled", 0.0) if running else None)
        idle.append(spec.get("idle", 1.0))
    return {"t0": T0, "interval_s": 1.0, "cores": cores,
            "parts": {**parts, **{f"replica:{h}": v for h, v in replicas.items()}},
            "limits": limits or {}, "throttled_s": throttled, "idle": idle,
            "locust_cpu_warnings": [], **extra}


QUARTER = {h: {"cpus": 0.25, "request": 0.25, "memory_bytes": 268435456} for h in HOSTS[4]}


def verdicts(found):
    return {b["level"]: b["verdict"] for b in found["levels"]}


def test_replicas_at_their_limit_while_the_machine_has_room():
    load = {n: {"generator": 0.3 + 0.05 * n, "replica": 0.24, "throttled": 0.3,
                "idle": 1.0} for n in (1, 2, 4)}
    found = bottleneck_findings(cpu_section(load, QUARTER), segments(), levels(1, 1, 1),
                                Thresholds())
    assert verdicts(found) == {1: "replicas", 2: "replicas", 4: "replicas"}
    four = found["levels"][2]
    assert four["replicas"]["hello-3"]["of_limit"] == pytest.approx(0.96)
    assert four["replicas"]["hello-3"]["throttled_share"] == pytest.approx(0.3)
    assert four["replicas_total"] == pytest.approx(0.96)
    assert four["parts"]["generator"] == pytest.approx(0.5)
    assert four["idle_share"] == pytest.approx(0.5)
    assert four["sentence"] == ("4 of 4 replicas used 96 % of their 0.25-CPU limit (throttled "
                                "up to 30 % of the time) while the machine was 50 % idle: at "
                                "4 replicas the replicas limited throughput")


def test_the_generator_near_a_whole_core():
    load = {1: {"generator": 0.5, "replica": 0.24, "throttled": 0.2},
            2: {"generator": 0.7, "replica": 0.24, "throttled": 0.2},
            4: {"generator": 0.98, "replica": 0.15, "idle": 0.2}}
    found = bottleneck_findings(cpu_section(load, QUARTER), segments(), levels(1, 1, 0.6),
                                Thresholds())
    assert verdicts(found) == {1: "replicas", 2: "replicas", 4: "generator"}
    assert found["levels"][2]["sentence"] == (
        "the load generator used 98 % of a core: at 4 replicas this measures the generator, "
        "not the app")
    # with two Locust processes, 0.98 cores is half a core each: not the generator
    found = bottleneck_findings(cpu_section(load, QUARTER, generator_processes=2), segments(),
                                levels(1, 1, 0.6), Thresholds())
    assert verdicts(found)[4] != "generator"


def test_locusts_own_cpu_warning_is_evidence():
    load = {n: {"generator": 0.6, "replica": 0.1} for n in (1, 2, 4)}
    cpu = cpu_section(load)
    cpu["locust_cpu_warnings"] = [{"t": T0 + 45.2, "text": "CPU usage above 90%! ..."}]
    found = bottleneck_findings(cpu, segments(), levels(1, 1, 1), Thresholds())
    assert verdicts(found) == {1: "unknown", 2: "unknown", 4: "generator"}
    assert "Locust warned of its own CPU 1 time(s)" in found["levels"][2]["sentence"]


def test_the_machine_without_idle_time_and_unlimited_replicas():
    load = {1: {"generator": 0.6, "balancer": 0.4, "store": 0.1, "replica": 0.8,
                "idle": 0.05},
            2: {"generator": 0.6, "balancer": 0.4, "store": 0.1, "replica": 0.45,
                "idle": 0.02},
            4: {"generator": 0.6, "balancer": 0.4, "store": 0.1, "replica": 0.22,
                "idle": 0.02}}
    found = bottleneck_findings(cpu_section(load), segments(), levels(1, 0.5, 0.25),
                                Thresholds())
    assert verdicts(found) == {1: "machine", 2: "machine", 4: "machine"}
    assert found["levels"][2]["sentence"] == (
        "the machine was 1 % idle (generator 0.60, balancer 0.40, store 0.10, replicas 0.88 of "
        "its 2 cores): at 4 replicas every part shares the cores, so this measures the "
        "machine, not the app")


def test_replicas_at_their_limit_on_a_saturated_machine_is_the_machine():
    load = {n: {"replica": 0.25, "throttled": 0.4, "idle": 0.0, "generator": 0.7}
            for n in (1, 2, 4)}
    found = bottleneck_findings(cpu_section(load, QUARTER), segments(), levels(1, 1, 1),
                                Thresholds())
    assert set(verdicts(found).values()) == {"machine"}
    assert "4 replica(s) near their limit too" in found["levels"][2]["sentence"]


def test_the_store_and_the_balancer():
    load = {1: {"store": 0.95}, 2: {"balancer": 0.97, "idle": 0.6}, 4: {"balancer": 0.97,
                                                                      "idle": 0.6}}
    cpu = cpu_section(load)
    found = bottleneck_findings(cpu, segments(), levels(1, 1, 1), Thresholds())
    assert verdicts(found) == {1: "store", 2: "balancer", 4: "balancer"}
    assert found["levels"][0]["sentence"].startswith("the store used 95 % of a core")
    # a balancer with two threads has room left at 0.97 cores
    found = bottleneck_findings(cpu_section(load, balancer_threads=2), segments(),
                                levels(1, 1, 1), Thresholds())
    assert verdicts(found)[4] == "unknown"
    assert found["levels"][2]["sentence"] == (
        "no part was near its limit (the machine was 30 % idle): at 4 replicas throughput "
        "followed the load offered")


def test_thresholds_decide_what_is_near():
    load = {n: {"replica": 0.21, "throttled": 0.05} for n in (1, 2, 4)}
    cpu = cpu_section(load, QUARTER)
    assert set(verdicts(bottleneck_findings(cpu, segments(), levels(1, 1, 1),
                                            Thresholds())).values()) == {"unknown"}
    loose = Thresholds(bottleneck_limit_share=0.8)
    assert set(verdicts(bottleneck_findings(cpu, segments(), levels(1, 1, 1),
                                            loose)).values()) == {"replicas"}
    loose = Thresholds(bottleneck_throttled_share=0.05)
    assert set(verdicts(bottleneck_findings(cpu, segments(), levels(1, 1, 1),
                                            loose)).values()) == {"replicas"}


def test_samples_straddling_a_scale_change_are_left_out():
    # a segment from 0.3 s to 19.7 s holds the whole samples 1..18; second 0 and 19 straddle
    assert sample_indices(T0, 1.0, [(T0 + 0.3, T0 + 19.7)]) == list(range(1, 19))
    assert sample_indices(T0, 1.0, [(T0 + 1.0, T0 + 3.0)]) == [1, 2]
    assert sample_indices(T0, 1.0, [(T0 + 0.2, T0 + 0.9)]) == []
    short = [{"t_start": T0, "t_end": T0 + 5, "level": 2, "short": True, "faults": []},
             {"t_start": T0 + 5, "t_end": T0 + 9, "level": 2, "short": False,
              "faults": [{"kind": "kill-replica"}]},
             {"t_start": T0 + 9, "t_end": T0 + 20, "level": 2, "short": False, "faults": []}]
    assert level_windows(short, 2) == [(T0 + 9, T0 + 20)]


def test_a_replica_counts_only_while_it_ran():
    cpu = validate_cpu(cpu_section({n: {"replica": 0.2} for n in (1, 2, 4)}, QUARTER))
    usage = level_usage(cpu, level_windows(segments(), 2))
    assert sorted(usage["replicas"]) == ["hello-1", "hello-2"]
    assert usage["replicas_total"] == pytest.approx(0.4)
    verdict, sentence = attribute(2, level_usage(cpu, []), Thresholds())
    assert verdict == "unknown" and "no CPU was sampled" in sentence


def test_scaling_efficiency_judged_only_where_the_replicas_were_the_bottleneck():
    load = {1: {"replica": 0.24, "throttled": 0.3}, 2: {"replica": 0.24, "throttled": 0.3},
            4: {"generator": 0.99, "replica": 0.15}}
    found = bottleneck_findings(cpu_section(load, QUARTER), segments(), levels(1, 0.7, 0.4),
                                Thresholds())
    checks = scaling_efficiency_checks(levels(1, 0.7, 0.4), found,
                                       Thresholds(min_scaling_efficiency=0.8))
    by_level = {c.evidence["level"]: c for c in checks}
    assert by_level[2].passed is False and by_level[2].value == 0.7
    assert by_level[4].passed is None and by_level[4].status == "not checked"
    assert by_level[4].reason.startswith("the replicas were not the bottleneck at 4: the load "
                                         "generator used 99 % of a core")
    # 0.7 passes a 0.6 threshold where judged; 4 replicas still not checked
    checks = scaling_efficiency_checks(levels(1, 0.7, 0.4), found,
                                       Thresholds(min_scaling_efficiency=0.6))
    assert [c.passed for c in checks] == [True, None]
    assert scaling_efficiency_checks(levels(1, 0.7, 0.4), found, Thresholds()) == []


def test_scaling_efficiency_needs_the_first_count_replica_bound_too():
    load = {1: {"generator": 0.95}, 2: {"replica": 0.24, "throttled": 0.3},
            4: {"replica": 0.24, "throttled": 0.3}}
    found = bottleneck_findings(cpu_section(load, QUARTER), segments(), levels(1, 1, 1),
                                Thresholds())
    checks = scaling_efficiency_checks(levels(1, 1, 1), found,
                                       Thresholds(min_scaling_efficiency=0.8))
    assert [c.passed for c in checks] == [None, None]
    assert all("not the bottleneck at 1" in c.reason for c in checks)


def test_scaling_efficiency_without_cpu_section_is_not_checked():
    found = bottleneck_findings(None, segments(), levels(1, 1, 1), Thresholds())
    assert found["available"] is False and "no cpu section" in found["reason"]
    checks = scaling_efficiency_checks(levels(1, 0.9, 0.9), found,
                                       Thresholds(min_scaling_efficiency=0.8))
    assert [c.passed for c in checks] == [None, None]
    assert "what limited throughput is unknown" in checks[0].reason


@pytest.mark.parametrize("mutate,words", [
    (lambda c: c.update(parts=[1, 2]), "cpu.parts is not an object"),
    (lambda c: c["parts"]["generator"].__setitem__(3, "x"), "cpu.parts.generator holds 'x'"),
    (lambda c: c["idle"].__setitem__(0, -1.0), "cpu.idle holds -1.0"),
    (lambda c: c.update(t0=None), "cpu.t0 is None"),
    (lambda c: c.update(cores=0), "must be above 0"),
    (lambda c: c.update(throttled_s=[]), "has the wrong type"),
    (lambda c: c.update(generator_processes="two"), "cpu.generator_processes is 'two'"),
])
def test_bad_cpu_section_is_one_line(mutate, words):
    cpu = cpu_section({n: {} for n in (1, 2, 4)})
    mutate(cpu)
    with pytest.raises(AnalysisInputError) as exc:
        bottleneck_findings(cpu, segments(), levels(1, 1, 1), Thresholds())
    assert words in str(exc.value) and "\n" not in str(exc.value)


def test_on_a_real_summarys_segments(tmp_path):
    """The analyzer's own segments (a synthetic history) with a CPU section laid over
    their times: every level judged, from the samples inside its steady stretches."""
    meta, cols = generate(SynthSpec(40_000, [1, 2], seed=7))
    summary = analyse(load_run(write(tmp_path / "run", meta, cols)), Thresholds()).summary
    start = min(s["t_start"] for s in summary["segments"])
    end = max(s["t_end"] for s in summary["segments"])
    n = int(end - start) + 2
    cpu = {"t0": float(int(start)), "interval_s": 1.0, "cores": 2,
           "parts": {"generator": [0.97] * n, "balancer": [0.2] * n, "store": [0.1] * n},
           "idle": [0.5] * n}
    found = bottleneck_findings(cpu, summary["segments"], summary["levels"], Thresholds())
    judged = [b for b in found["levels"] if b["samples"]]
    assert judged and {b["verdict"] for b in judged} == {"generator"}


def test_real_processes_a_busy_generator_is_named(no_leftovers):
    """Measured, not written: a process spinning on one core stands for the load generator
    and a sleeping one for a replica; sampled once a second for 3 s with psutil, the
    generator is named. (Machine-wide idle time is shared with whatever else runs here.)"""
    spin = subprocess.Popen([sys.executable, "-c",
                             "import time\nend = time.time() + 6\nwhile time.time() < end: pass"])
    rest = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(6)"])
    try:
        procs = {"generator": psutil.Process(spin.pid), "replica:hello-1": psutil.Process(rest.pid)}

        def cpu_s(p):
            times = p.cpu_times()
            return times.user + times.system

        time.sleep(0.5)
        t0 = time.time()
        last = {k: cpu_s(p) for k, p in procs.items()}
        idle_last = psutil.cpu_times().idle
        parts = {k: [] for k in procs}
        idle = []
        for _ in range(3):
            time.sleep(1.0)
            now = {k: cpu_s(p) for k, p in procs.items()}
            for k in procs:
                parts[k].append(now[k] - last[k])
            idle_now = psutil.cpu_times().idle
            idle.append(idle_now - idle_last)
            last, idle_last = now, idle_now
        seconds = time.time() - t0
    finally:
        for p in (spin, rest):
            p.kill()
            p.wait(timeout=5)
    assert seconds < 4.5, f"sampling took {seconds:.1f} s: the machine is too busy to judge"
    got = sum(parts["generator"]) / 3
    if got < 0.6:  # a shared machine gave the spinner less than most of a core
        pytest.skip(f"the spinning process got {got:.2f} of a core: the machine is too busy "
                    "for a process to stand for a saturated generator")
    cpu = {"t0": t0, "interval_s": 1.0, "cores": psutil.cpu_count(), "parts": parts,
           "idle": idle}
    seg = [{"t_start": t0, "t_end": t0 + 3.0, "level": 1, "short": False, "faults": []}]
    found = bottleneck_findings(cpu, seg, [{"level": 1}],
                                Thresholds(bottleneck_core_share=0.55))
    (one,) = found["levels"]
    assert one["parts"]["generator"] > 0.55, one["parts"]
    assert one["replicas"]["hello-1"]["cores"] < 0.05
    assert one["verdict"] == "generator", one["sentence"]


def test_bottleneck_thresholds_are_shares():
    from loadtest.analysis.thresholds import ThresholdError, resolve
    assert resolve({"bottleneck_idle_share": 0.2}, None).bottleneck_idle_share == 0.2
    with pytest.raises(ThresholdError, match="a share, between 0 and 1"):
        resolve({"bottleneck_core_share": 1.2}, None)
