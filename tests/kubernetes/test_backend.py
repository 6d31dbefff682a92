"""``--stack kubernetes`` end to end, through Locust as a user runs it, on the session's
cluster (``--kubeconfig``: one cluster start for all of these; test_own_cluster.py lets
the harness start and stop its own).

Named to run before test_cluster.py, whose last test stops the session's cluster.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from loadtest.contract import events as ev
from loadtest.stack.kubernetes import leftovers
from loadtest.stack.kubernetes.rest import Kube
from loadtest.stack.kubernetes.runtime import Runtime, container_id
from tests.conftest import LOCUSTFILE, ROOT, free_port, stack_processes
from tests.docker_engine import engine_for_module

pytestmark = pytest.mark.kubernetes
SHOP = ROOT / "examples" / "shop"
SHOP_BASE = SHOP / "k8s" / "base"
SHOP_NO_PRESTOP = SHOP / "k8s" / "overlays" / "no-prestop"
MANAGED = "app.kubernetes.io/managed-by=scalecheck"

engine = pytest.fixture(scope="module", name="engine")(engine_for_module)


@pytest.fixture(scope="module")
def shop_image(engine):
    build = subprocess.run(["sh", str(SHOP / "build-image.sh")], capture_output=True,
                           text=True, timeout=1200, env={**os.environ, "PYTHON": sys.executable})
    assert build.returncode == 0, build.stderr[-2000:]
    return "scalecheck/shop:latest"


@pytest.fixture
def kube(running_cluster):
    api = Kube(running_cluster.kubeconfig)
    yield api
    api.close()


#: What comes with a cluster's first pod and stays for the cluster's life (its bridge,
#: the kubelet's QoS cgroups and host directories), not a run's to remove.
CLUSTER_LIFETIME = re.compile(r"^(interface sck-br0|directory .*|cgroup (?!.*/pod).*)$")


def host_state(cluster) -> set[str]:
    """The cluster's things on the host (processes, mounts, veths, network namespaces,
    pod cgroups, chains, files: the cluster package's leftovers check), but those that
    live as long as the cluster."""
    return {i for i in leftovers.current(cluster.layout).items
            if not CLUSTER_LIFETIME.match(i)}


@pytest.fixture
def nothing_left(running_cluster, kube):
    """After the test: no namespace of a run, no process of the harness, and the host as
    the cluster had it before the run (a pod's sandbox goes a moment after its pod:
    waited for, bounded)."""
    before_host = host_state(running_cluster)
    before_procs = stack_processes()
    yield
    deadline = time.monotonic() + 60
    while True:
        namespaces = [n["metadata"]["name"] for n in
                      kube.get("/api/v1/namespaces", labelSelector=MANAGED)["items"]]
        host = sorted(host_state(running_cluster) - before_host)
        procs = stack_processes() - before_procs
        if not (namespaces or host or procs) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert namespaces == [], namespaces
    assert host == [], host
    assert not procs, procs


def harness(args: list[str], run_dir: Path, cluster, locustfile: Path = LOCUSTFILE,
            timeout: float = 300, users: int | None = 4) -> subprocess.CompletedProcess:
    """``users``: -u and -r (None: neither, a --load-profile gives them)."""
    crowd = ["-u", str(users), "-r", str(users)] if users else []
    cmd = [str(Path(sys.executable).parent / "locust"), "-f", str(locustfile), "--headless",
           *crowd, "--stack", "kubernetes",
           "--kubeconfig", str(cluster.kubeconfig), "--run-dir", str(run_dir),
           "--stack-port", str(free_port()), "--api-port", str(free_port()),
           "--only-summary", *args]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    print(f"\nlocust {' '.join(args)}: exit {proc.returncode} after "
          f"{time.monotonic() - started:.1f} s")
    return proc


def analyse(run_dir: Path) -> tuple[int, dict]:
    proc = subprocess.run([sys.executable, str(ROOT / "analyze.py"), str(run_dir)],
                          capture_output=True, text=True, timeout=180)
    summary = json.loads((run_dir / "summary.json").read_text())
    print("\n".join(proc.stdout.strip().splitlines()[-4:]))
    return proc.returncode, summary


def checks(summary: dict) -> dict[str, dict]:
    return {c["name"]: c for c in summary["checks"]}


def records(run_dir: Path) -> pd.DataFrame:
    df = pd.read_parquet(run_dir / "requests")
    return df.assign(replica=df["hostname"].fillna(df["server"]))


def events(run: dict, name: str) -> list[dict]:
    return [e for e in run["stack_events"] if e["event"] == name]


# -- levels 1 -> 3 -> 2, the hello app and the shop, behind each balancer ------------------

@pytest.mark.parametrize("balancer", ["traefik", "haproxy"])
@pytest.mark.parametrize("app", ["hello", "shop"])
def test_levels_served_by_exactly_their_pods(running_cluster, engine, shop_image, nothing_left,
                                             tmp_path, app, balancer):
    """Each stage is served by exactly its level of pods, named by pod (the hello app
    says its pod's hostname; the shop says nothing, the balancer names it); the verdict
    passes; nothing of the run stays (the fixture)."""
    run_dir = tmp_path / "run"
    extra = [] if app == "hello" else ["--kube-manifests", str(SHOP_BASE),
                                       "--kube-deployment", "shop"]
    proc = harness(["--balancer", balancer, "--scale-levels", "1,3,2", "--stage-time", "5s",
                    "--min-steady", "2s", *extra], run_dir, running_cluster,
                   locustfile=LOCUSTFILE if app == "hello" else SHOP / "locustfile.py")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "completed"
    kube = run["stack"]["kubernetes"]
    assert kube["cluster"] == "kubeconfig" and kube["embedded"] is True
    assert kube["deployment"] == app
    if app == "shop":  # :latest and no pull policy; its HPA would fight the plan
        assert any("imagePullPolicy IfNotPresent" in c for c in kube["changes"])
        assert kube["held_back"][0].startswith("HorizontalPodAutoscaler/shop")
    pods = {e["hostname"] for e in events(run, "replica_added")}
    assert all(re.fullmatch(rf"{app}-[a-z0-9]+-[a-z0-9]{{5}}", p) for p in pods), pods
    df = records(run_dir)
    for stage in run["stages"]:
        steady = df[(df.stage == stage["index"]) & (df.t_start >= stage["t_ready"])]
        served = set(steady.replica.dropna())
        assert len(served) == stage["level"] and served <= pods, (stage, served)
    code, summary = analyse(run_dir)
    assert code == 0, checks(summary)


# -- the scale-in race ---------------------------------------------------------------------

@pytest.mark.parametrize("prestop", [False, True], ids=["no-prestop", "prestop-5s"])
def test_scale_in_race(running_cluster, shop_image, nothing_left, tmp_path, prestop):
    """The shop scaled 3 -> 1 under load. Without preStop it stops accepting connections
    at SIGTERM while the balancer, fed from the EndpointSlice, still sends it requests:
    transition_errors fails, naming the pods that cut them. With its 5 s preStop sleep
    the balancer has let the pods go before they stop: nothing is cut."""
    run_dir = tmp_path / "run"
    proc = harness(["--kube-manifests", str(SHOP_BASE if prestop else SHOP_NO_PRESTOP),
                    "--kube-deployment", "shop", "--scale-levels", "3,1", "--stage-time", "5s",
                    "--min-steady", "2s"], run_dir, running_cluster,
                   locustfile=SHOP / "locustfile.py", users=10)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    run = json.loads((run_dir / "run.json").read_text())
    removing = events(run, "replica_removing")
    assert len(removing) == 2
    for event in removing:  # both of Kubernetes' times, and the balancer's
        assert event["terminating_at"] <= event["noticed_terminating"] + 1
        assert event["left_endpoints_at"] is not None
        assert event["left_endpoints_at"] <= event["unrouted_at"] == event["t"]
    code, summary = analyse(run_dir)
    transitions = checks(summary)["transition_errors"]
    cut = sum(t["cut"] for t in summary["transitions"])
    print(f"\n{'with' if prestop else 'without'} preStop: {cut} request(s) cut at 3 -> 1")
    if prestop:
        assert code == 0 and transitions["status"] == "pass", transitions
        assert cut == 0
    else:
        assert code == 1 and transitions["status"] == "fail", transitions
        blamed = set(transitions["evidence"]["changes"][0]["errors_by_replica"])
        assert cut > 0 and blamed and blamed <= {e["hostname"] for e in removing}, transitions
        assert all(name in transitions["reason"] for name in blamed)


# -- faults --------------------------------------------------------------------------------

def test_kill_and_delete_replica(running_cluster, kube, engine, nothing_left, tmp_path):
    """kill-replica SIGKILLs a pod's container through containerd: the kubelet's reason is
    recorded with the death, the pod comes back under its name (the replacement). A
    container killed behind the harness's back (here, by the test) is a death too, and
    replicas_died fails naming it alone: the scheduled one was planned. delete-replica
    deletes a pod gracefully: removed, and its ReplicaSet's new pod added."""
    run_dir = tmp_path / "run"
    outside: dict[str, str] = {}
    done = threading.Event()

    def kill_another() -> None:
        """Once the scheduled kill's pod restarted, SIGKILL another pod's container."""
        rt = Runtime(running_cluster.containerd_socket)
        deadline = time.monotonic() + 120
        while not done.is_set() and time.monotonic() < deadline:
            ns = kube.get("/api/v1/namespaces", labelSelector=MANAGED)["items"]
            pods = kube.get(f"/api/v1/namespaces/{ns[0]['metadata']['name']}/pods",
                            labelSelector="app=hello")["items"] if ns else []
            restarted = [p for p in pods if any(c.get("restartCount") for c in
                                                p["status"].get("containerStatuses") or [])]
            others = [p for p in pods if p not in restarted and
                      (p["status"].get("containerStatuses") or [{}])[0].get("ready")]
            if restarted and others:
                victim = others[0]
                outside["pod"] = victim["metadata"]["name"]
                rt.kill(container_id(victim["status"]["containerStatuses"][0]["containerID"]),
                        signal.SIGKILL)
                return
            time.sleep(0.3)

    killer = threading.Thread(target=kill_another, daemon=True)
    killer.start()
    try:
        proc = harness(["--scale-levels", "3", "--stage-time", "16s",
                        "--fault", "3s:kill-replica", "--fault", "11s:delete-replica"],
                       run_dir, running_cluster)
    finally:
        done.set()
        killer.join(10)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    assert outside, "the test found no second pod to kill"
    run = json.loads((run_dir / "run.json").read_text())
    applied = {e["kind"]: e for e in events(run, "fault_applied")}
    killed = applied["kill-replica"]["hostname"]
    deaths = {e["hostname"]: e for e in events(run, "replica_died")}
    assert set(deaths) == {killed, outside["pod"]}, deaths
    death = deaths[killed]
    assert death["reason"] == "Error" and death["returncode"] == 137 and death["signal"] == 9
    back = [e for e in events(run, "replica_added")
            if e["hostname"] == killed and e["t"] > death["t"]]
    assert back, "the killed pod's container was not seen routed again"
    deleted = applied["delete-replica"]["hostname"]
    assert deleted in {e["hostname"] for e in events(run, "replica_removing")}
    assert any(e["t"] > applied["delete-replica"]["t"] and e["hostname"] not in deaths
               and e["hostname"] != deleted for e in events(run, "replica_added"))
    code, summary = analyse(run_dir)
    died = checks(summary)["replicas_died"]
    assert died["status"] == "fail" and died["evidence"]["replicas"] == [outside["pod"]], died
    kill = next(f for f in summary["faults"] if f["kind"] == "kill-replica")
    assert kill["replaced_after_s"] is not None and kill["replaced_after_s"] < 30, kill
    assert checks(summary)["faults_applied"]["status"] == "pass"


def test_store_faults(running_cluster, engine, nothing_left, tmp_path):
    """The hello app's Redis in the cluster: frozen through containerd, then restarted
    with persistence (SAVE onto its pod's volume, SHUTDOWN, the kubelet starts it again):
    the counter survives, the harness's own restart is no store death, and every check
    passes."""
    run_dir = tmp_path / "run"
    proc = harness(["--scale-levels", "2", "--stage-time", "14s",
                    "--fault", "3s:pause-redis:2s", "--fault", "8s:restart-redis:persist"],
                   run_dir, running_cluster)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads((run_dir / "run.json").read_text())
    assert [e["kind"] for e in events(run, "fault_ended")] == ["pause-redis", "restart-redis"]
    assert events(run, "fault_failed") == [] and events(run, "store_died") == []
    restart = events(run, "fault_ended")[1]
    assert restart["counter_before"] > 0 and restart["counter_read_after"] >= \
        restart["counter_before"], restart
    code, summary = analyse(run_dir)
    assert code == 0, checks(summary)
    assert summary["consistency"]["resets"] == []


# -- bad input -----------------------------------------------------------------------------

def _bad_manifests(tmp_path: Path) -> dict[str, list[str]]:
    from loadtest.stack.kubernetes.backend import DEFAULT_MANIFESTS

    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x\n")
    absent = tmp_path / "absent-image.yaml"
    absent.write_text(DEFAULT_MANIFESTS.read_text().replace(
        "scalecheck/hello:latest", "scalecheck/no-such-image:1"))
    return {"broken": ["--kube-manifests", str(broken)],
            "no-deployment": ["--kube-deployment", "web"],
            "absent-image": ["--kube-manifests", str(absent), "--kube-deployment", "hello"]}


BAD_INPUT = [
    ("broken", "does not parse as YAML"),
    ("no-deployment", "--kube-deployment web: no Deployment of that name"),
    ("absent-image", "image scalecheck/no-such-image:1 is not present locally"),
]


@pytest.mark.parametrize(("case", "said", "cluster_kind"), [
    *[(case, said, kind) for case, said in BAD_INPUT for kind in ("kubeconfig", "embedded")],
    # a kubeconfig is what this case is about: no embedded variant
    ("dead-kubeconfig", "does not answer (connection refused)", "kubeconfig"),
])
def test_bad_input_is_one_line(running_cluster, kube, tmp_path, case, said, cluster_kind):
    """One line, exit 2, no traceback, and nothing made: no run directory, no namespace,
    no process, the machine's cluster untouched (the embedded path fails before starting
    one)."""
    if case == "dead-kubeconfig":
        config = json.loads(Path(running_cluster.kubeconfig).read_text())
        for entry in config["clusters"]:
            entry["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
        dead = tmp_path / "dead.conf"
        dead.write_text(json.dumps(config))
        args = ["--kubeconfig", str(dead)]
    else:
        args = _bad_manifests(tmp_path)[case]
        if cluster_kind == "kubeconfig":
            args += ["--kubeconfig", str(running_cluster.kubeconfig)]
    before = stack_processes()
    run_dir = tmp_path / "run"
    proc = subprocess.run([str(Path(sys.executable).parent / "locust"), "-f", str(LOCUSTFILE),
                           "--headless", "--stack", "kubernetes", "--run-dir", str(run_dir),
                           "--stack-port", str(free_port()), *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert last.startswith("scalecheck: error: ") and said in last, last
    assert not run_dir.exists()
    assert kube.get("/api/v1/namespaces", labelSelector=MANAGED)["items"] == []
    assert stack_processes() == before


# -- the stack CLI -------------------------------------------------------------------------

def test_stack_cli_up_scale_down(running_cluster, engine, nothing_left, tmp_path):
    """python -m loadtest.stack up --stack kubernetes, for a look: up in the background,
    ps names pods, scale, the app answers through the balancer, down."""
    port = free_port()

    def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "loadtest.stack", "--project-dir",
                               str(tmp_path), *args], capture_output=True, text=True,
                              timeout=timeout, cwd=ROOT)

    up = cli("up", "-d", "--stack", "kubernetes", "--kubeconfig",
             str(running_cluster.kubeconfig), "--scale", "2", "--stack-port", str(port),
             "--api-port", str(free_port()))
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        ps = cli("ps")
        assert len(re.findall(r"^hello-[a-z0-9]+-[a-z0-9]{5} ", ps.stdout, re.M)) == 2, ps.stdout
        scale = cli("scale", "3")
        assert scale.returncode == 0 and "added hello-" in scale.stdout, scale.stdout
        names = set()
        for _ in range(30):
            request = urllib.request.Request(f"http://127.0.0.1:{port}/",
                                             headers={"Accept": "application/json"})
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                names.add(json.loads(response.read())["hostname"])
        assert len(names) == 3, names
    finally:
        down = cli("down")
    assert down.returncode == 0 and "stack down" in down.stdout


# -- --autoscale cluster: the shop's own HPA (its staging overlay: down to one pod, a 30 s
# scale-down window) drives the Deployment under a rising, then falling load; the harness
# only watches. Real controller manager, real metrics-server.

FAST = SHOP / "k8s" / "overlays" / "fast-scale-down"


def test_the_shop_s_own_hpa_scales_up_and_back_down(running_cluster, engine, shop_image,
                                                     nothing_left, tmp_path):
    run_dir = tmp_path / "run"
    proc = harness(["--autoscale", "cluster", "--kube-manifests", str(FAST),
                    "--load-profile", "0s:2,5s:24,75s:24,80s:1,140s:1",
                    "--request-timeout", "10s"], run_dir, running_cluster,
                   locustfile=SHOP / "locustfile.py", timeout=420, users=None)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    code, summary = analyse(run_dir)
    assert code in (0, 1), summary.get("verdict")


    meta = json.loads((run_dir / "run.json").read_text())
    events = meta["stack_events"]
    decisions = [e for e in events if e["event"] == ev.AUTOSCALE_DECISION]
    assert decisions and all(d["policy"] == "cluster" for d in decisions)
    measured = [d for d in decisions if d["reported_metrics"]]
    assert measured, "the controller reported a CPU utilisation"
    assert any(d["pods"] and d["pods"][0]["cpu_request_m"] == 100.0 for d in decisions)
    # the behavior in force: the overlay's window, the API server's defaults for the rest
    assert decisions[-1]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 30
    assert decisions[-1]["behavior"]["scaleUp"]["policies"]
    asks = [(e["t"], e["level"]) for e in events
            if e["event"] == ev.SCALE_ASKED and e.get("by") == "autoscaler"]
    assert all(level >= 1 for _, level in asks), asks  # never the status's first 0
    peak = max(level for _, level in asks)
    assert peak > 1, f"the HPA scaled up under the load: {asks}"
    assert asks[-1][1] < peak, f"and back down after its window: {asks}"
    assert any(e["event"] == ev.SCALE_READY for e in events)
    # judged as any autoscaled run: the autoscaling section is there, with its decisions
    scaling = summary["autoscaling"]
    assert scaling["policy"] == "cluster" and scaling["decisions"] == len(decisions)
    assert scaling["scale_changes"] >= 2
    print(f"\nthe HPA's changes: {[(round(t - events[0]['t'], 1), lv) for t, lv in asks]}")
