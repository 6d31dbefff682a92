"""The Docker Swarm path: the stack file checked offline, then the harness on a real
single-node swarm (started by the harness and left again), the SDK verbs, bad input,
and a two-node swarm on one machine (a second dockerd in a network namespace)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import LOCUSTFILE, ROOT, free_port, need, run_locust
from tests.docker_engine import SKIPPED, engine_for_module

STACK_FILE = ROOT / "compose" / "swarm-stack.yml"
STACK_LABEL = "com.docker.stack.namespace"
OWNER_LABEL = "scalecheck.swarm.stack"


def _docker(*args: str, host: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, **({"DOCKER_HOST": host} if host else {})}
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def engine_state() -> tuple[str, list[str]]:
    """The engine's swarm state and its networks: what a run must leave as it found."""
    state = _docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()
    networks = sorted(_docker("network", "ls", "--format", "{{.Name}}").stdout.split())
    return state, networks


def leftovers(stack: str) -> list[str]:
    """Anything of this stack still on the engine: services, containers (the stack's tasks
    and the harness's Traefik), its network, its volumes."""
    out = []
    for args in (["ps", "-aq", "--filter", f"label={STACK_LABEL}={stack}"],
                 ["ps", "-aq", "--filter", f"label={OWNER_LABEL}={stack}"],
                 ["ps", "-aq", "--filter", f"name={stack}-traefik"],
                 ["network", "ls", "-q", "--filter", f"name={stack}"],
                 ["volume", "ls", "-q", "--filter", f"label={STACK_LABEL}={stack}"]):
        out += _docker(*args).stdout.split()
    if engine_state()[0] == "active":
        out += _docker("service", "ls", "-q", "--filter",
                       f"label={STACK_LABEL}={stack}").stdout.split()
    return out


def stack_config() -> dict:
    """The stack file as `docker stack config` renders it (client side), or plain YAML."""
    proc = _docker("stack", "config", "-c", str(STACK_FILE)) if shutil.which("docker") else None
    if proc is not None and proc.returncode == 0:
        return yaml.safe_load(proc.stdout)
    print("`docker stack config` is not available: swarm-stack.yml checked as plain YAML")
    return yaml.safe_load(STACK_FILE.read_text())


def _seconds(text: str) -> float:
    return float(str(text).removesuffix("s"))


@pytest.mark.process
def test_stack_file_matches_what_the_harness_expects():
    cfg = stack_config()
    hello, redis = cfg["services"]["hello"], cfg["services"]["redis"]
    labels = hello["deploy"]["labels"]
    labels = labels if isinstance(labels, dict) else dict(x.split("=", 1) for x in labels)
    assert labels["traefik.enable"] == "true" and labels["traefik.swarm.lbswarm"] == "false"
    assert labels["traefik.http.services.hello.loadbalancer.healthcheck.path"] == "/health"
    assert labels["traefik.http.services.hello.loadbalancer.server.port"] == "8000"
    assert "labels" not in hello  # Traefik's swarm provider reads service labels only
    assert hello["hostname"] == "{{.Task.Name}}"
    # No IPVS on our machines: a virtual IP would not answer.
    assert hello["deploy"]["endpoint_mode"] == redis["deploy"]["endpoint_mode"] == "dnsrr"
    assert "ports" not in hello and "ports" not in redis
    env = hello["environment"]
    env = env if isinstance(env, dict) else dict(x.split("=", 1) for x in env)
    assert _seconds(hello["stop_grace_period"]) > float(env["DRAIN_SECONDS"])
    assert "/health" in " ".join(hello["healthcheck"]["test"])
    assert _seconds(hello["deploy"]["restart_policy"]["delay"]) <= 1
    assert redis["command"][:2] == ["redis-server", "--save"]
    assert {"--appendonly", "--protected-mode"} <= set(redis["command"])
    network = cfg["networks"]["backend"]
    assert network["external"] is True


@pytest.mark.process
def test_docker_not_running_is_one_line(tmp_path):
    proc = run_locust(["--headless", "-u", "1", "--stack", "swarm",
                       "--run-dir", str(tmp_path / "r"), "--stack-port", str(free_port())],
                      env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}, timeout=60)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert last == "scalecheck: error: the Docker daemon is not running (start dockerd, or use " \
                   "--stack local)"
    assert not (tmp_path / "r").exists()


@pytest.mark.process
def test_bad_swarm_input_is_one_line(tmp_path):
    missing = run_locust(["--headless", "-u", "1", "--stack", "swarm", "--swarm-stack-file",
                          str(tmp_path / "nope.yml"), "--run-dir", str(tmp_path / "r"),
                          "--stack-port", str(free_port())], timeout=60)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines()[-1] == \
        f"scalecheck: error: stack file not found: {tmp_path / 'nope.yml'}"
    haproxy = run_locust(["--headless", "-u", "1", "--stack", "swarm", "--balancer", "haproxy",
                          "--run-dir", str(tmp_path / "r"), "--stack-port", str(free_port())],
                         timeout=60)
    assert haproxy.returncode == 2
    assert haproxy.stderr.strip().splitlines()[-1].endswith("the swarm stack offers traefik")


engine = pytest.fixture(scope="module", name="engine")(engine_for_module)


def test_swarm_stack_end_to_end(engine, tmp_path):
    """Levels 1 -> 3 -> 2 through the loopback Traefik: each stage served by exactly its
    level of tasks, no request cut on scale-down, the counter consistent, Swarm's task
    events recorded, and the engine left as it was (the harness started the swarm)."""
    before = engine_state()
    run_dir = tmp_path / "swarm"
    started = time.monotonic()
    proc = run_locust(["--headless", "-u", "4", "-r", "4", "--stack", "swarm",
                       "--scale-levels", "1,3,2", "--stage-time", "10s", "--min-steady", "2s",
                       "--run-dir", str(run_dir), "--stack-port", str(free_port()),
                       "--api-port", str(free_port()), "--only-summary"], timeout=400)
    print(f"locust --stack swarm took {time.monotonic() - started:.1f} s")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads((run_dir / "run.json").read_text())
    df = pd.read_parquet(run_dir / "requests")
    stack = run["stack"]
    assert run["status"] == "completed"
    assert stack["backend"] == "swarm" and stack["balancer_version"].startswith("3.")
    assert stack["swarm_created"] is (before[0] == "inactive")
    assert run["totals"]["recorded"] == run["totals"]["locust"] == len(df) > 100
    for stage in run["stages"]:
        steady = df[(df.stage == stage["index"]) & (df.t_start >= stage["t_ready"])]
        assert steady.hostname.nunique() == stage["level"], stage
        assert steady.hostname.str.startswith(f"{stack['stack']}_hello.").all()
    assert (df.status == 200).all(), df[df.status != 200].error.value_counts()
    assert df.counter.notna().all() and df.counter.is_unique
    assert run["counter"]["after"] - run["counter"]["before"] == len(df)
    kinds = [e["event"] for e in run["stack_events"]]
    assert kinds.count("task_started") >= 3 and "task_shutdown" in kinds
    assert kinds.count("replica_added") == 3 and kinds.count("replica_removing") == 1
    assert "replica_removed" in kinds and "replica_died" not in kinds
    routed = [e["seconds"] for e in run["stack_events"] if e["event"] == "scale_ready"]
    assert all(0 <= s < 120 for s in routed)
    logs = run_dir / "logs"
    assert (logs / "hello.log").exists() and (logs / "traefik.log").exists()
    assert len(list(logs.glob(f"{stack['stack']}_hello.*.log"))) == 3
    verdict = subprocess.run([sys.executable, str(ROOT / "analyze.py"), str(run_dir)],
                             capture_output=True, text=True, timeout=120)
    assert verdict.returncode == 0, verdict.stdout[-3000:]
    assert leftovers(stack["stack"]) == []
    assert engine_state() == before


def _events(stack, kind: str, timeout: float, **match) -> list[dict]:
    """Poll the stack (as the harness does) until an event of ``kind`` matches; bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack.poll()
        found = [e for e in stack.events if e["event"] == kind
                 and all(e.get(k) == v for k, v in match.items())]
        if found:
            return found
        time.sleep(0.25)
    pytest.fail(f"no {kind} {match} within {timeout:.0f} s: {stack.events}")


def _visit(port: int, times: int) -> list[dict]:
    """GET / through the balancer (increments the counter), bounded."""
    out = []
    for _ in range(times):
        request = urllib.request.Request(f"http://127.0.0.1:{port}/",
                                         headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as resp:
            out.append(json.loads(resp.read()))
    return out


def test_kill_a_task_swarm_replaces_it(engine, tmp_path):
    """The SDK verbs: kill a task's container, see replica_died (Docker's time) and the
    task Swarm starts in its slot; restart Redis with and without its data; restart
    Traefik without a balancer_died; everything removed."""
    from loadtest.stack.docker.swarm.stack import SwarmStack

    before = engine_state()
    port = free_port()
    stack = SwarmStack(port=port, api_port=free_port(), log_dir=tmp_path / "logs")
    try:
        stack.up(2)
        victim, other = (r.hostname for r in stack.replicas())
        assert stack.kill_replica(victim, signal.SIGKILL) == victim
        died = _events(stack, "replica_died", 20, hostname=victim)[0]
        assert died["returncode"] == 137 and died["t"] <= died["noticed"]
        new = _events(stack, "task_rescheduled", 20, replacing=victim)[0]["hostname"]
        _events(stack, "replica_added", 30, hostname=new)
        assert stack.scale(2).level == 2
        assert {r.hostname for r in stack.replicas()} == {new, other}
        assert stack.read_counter() == 0  # the probes ask /health, never /
        assert len(_visit(port, 5)) == 5 and stack.read_counter() == 5
        assert stack._counter_over_network() == 5  # the way for Redis on another node
        kept = stack.restart_store(persist=True)
        assert kept["counter_before"] == kept["counter_after"] == kept["counter_read_after"] == 5
        lost = stack.restart_store(persist=False)
        assert lost["counter_after"] == lost["counter_read_after"] == 0
        stack.restart_balancer()
        assert len(_visit(port, 2)) == 2
        stack.poll()
        kinds = {e["event"] for e in stack.events}
        assert not kinds & {"balancer_died", "store_died"}, stack.events
    finally:
        stack.down()
        stack.down()  # safe twice
    assert (tmp_path / "logs" / "hello.log").exists()
    assert leftovers(stack.stack_name) == []
    assert engine_state() == before


def test_sigterm_while_starting_leaves_nothing(engine, tmp_path):
    """SIGTERM while the harness brings the stack up: exit 143, everything it had made
    removed, the swarm left as found."""
    before = engine_state()
    cmd = [str(Path(sys.executable).parent / "locust"), "-f", str(LOCUSTFILE), "--headless",
           "-u", "1", "--stack", "swarm", "--scale-levels", "2", "--stage-time", "10s",
           "--run-dir", str(tmp_path / "r"), "--stack-port", str(free_port())]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 60
        stacks: list[str] = []
        while not stacks and time.monotonic() < deadline and proc.poll() is None:
            listed = _docker("service", "ls", "--format", "{{.Name}}").stdout.split()
            stacks = sorted({n.split("_")[0] for n in listed if n.startswith("scalecheck-")})
            time.sleep(0.1)
        assert stacks, "the stack was never deployed"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err[-2000:]
    assert "SIGTERM while the stack was starting" in err
    assert all(leftovers(s) == [] for s in stacks)
    assert engine_state() == before


# -- two nodes on one machine ---------------------------------------------------------

HOST_ADDR, NODE_ADDR, PREFIX = "10.99.0.1", "10.99.0.2", "10.99.0.0/24"
ADDR_POOL = "10.20.0.0/16"


class NodeB:
    """A second Docker engine in a network namespace, joined to a swarm whose manager is
    the test's engine, both on a veth pair with private addresses (nothing leaves the
    machine). `ip netns exec` hides the cgroup mounts from dockerd; `nsenter --net`
    enters only the network namespace."""

    def __init__(self) -> None:
        key = uuid.uuid4().hex[:6]
        self.netns = f"scsw-{key}"
        self.veth_host, self.veth_node = f"scswh{key}", f"scswb{key}"
        self.root = Path(f"/var/lib/scalecheck-node-{key}")
        self.exec_root = Path(f"/run/scalecheck-node-{key}")
        self.socket = f"/run/scalecheck-node-{key}.sock"
        self.cgroup = f"scalecheck-node-{key}"
        self.host = f"unix://{self.socket}"
        self.proc: subprocess.Popen | None = None
        self.swarm_created = False
        self.gwbridge_existed = True
        self.log = Path(f"/tmp/scalecheck-node-{key}.log")

    @staticmethod
    def unavailable() -> str | None:
        if os.geteuid() != 0:
            return "a second dockerd needs root"
        for tool in ("ip", "nsenter", "dockerd"):
            if shutil.which(tool) is None:
                return f"{tool} is not installed"
        routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
        if "10.99.0." in routes or "10.20." in routes:
            return f"{PREFIX} or {ADDR_POOL} is already routed on this machine"
        if engine_state()[0] != "inactive":
            return "the engine is already in a swarm; the test needs to make its own"
        return None

    def _ip(self, *args: str, netns: bool = False) -> None:
        cmd = ["ip", *(["netns", "exec", self.netns, "ip"] if netns else []), *args]
        subprocess.run(cmd, check=True, capture_output=True, timeout=30)

    def start(self) -> None:
        self._ip("netns", "add", self.netns)
        self._ip("link", "add", self.veth_host, "type", "veth", "peer", "name", self.veth_node)
        self._ip("link", "set", self.veth_node, "netns", self.netns)
        self._ip("addr", "add", f"{HOST_ADDR}/24", "dev", self.veth_host)
        self._ip("link", "set", self.veth_host, "up")
        self._ip("addr", "add", f"{NODE_ADDR}/24", "dev", self.veth_node, netns=True)
        self._ip("link", "set", self.veth_node, "up", netns=True)
        self._ip("link", "set", "lo", "up", netns=True)
        self.root.mkdir(parents=True)
        self.exec_root.mkdir(parents=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["nsenter", f"--net=/var/run/netns/{self.netns}", "dockerd",
                 "--data-root", str(self.root), "--exec-root", str(self.exec_root),
                 "--pidfile", str(self.exec_root / "dockerd.pid"), "-H", self.host,
                 "--bridge", "none", "--cgroup-parent", f"/{self.cgroup}", "--log-level", "warn"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while _docker("info", host=self.host, timeout=10).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the second dockerd did not start; see {self.log}")
            time.sleep(0.5)

    def form_swarm(self) -> None:
        self.gwbridge_existed = "docker_gwbridge" in engine_state()[1]
        self.swarm_created = True
        init = _docker("swarm", "init", "--advertise-addr", HOST_ADDR, "--listen-addr",
                       f"{HOST_ADDR}:2377", "--data-path-addr", HOST_ADDR,
                       "--default-addr-pool", ADDR_POOL)
        assert init.returncode == 0, init.stderr
        token = _docker("swarm", "join-token", "-q", "worker").stdout.strip()
        join = _docker("swarm", "join", "--token", token, "--advertise-addr", NODE_ADDR,
                       "--listen-addr", f"{NODE_ADDR}:2377", "--data-path-addr", NODE_ADDR,
                       f"{HOST_ADDR}:2377", host=self.host)
        assert join.returncode == 0, join.stderr

    def load_image(self, image: str) -> None:
        """The second engine has its own image store, and there is no registry."""
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        load = subprocess.run(["docker", "-H", self.host, "load", "-q"], stdin=save.stdout,
                              capture_output=True, text=True, timeout=300)
        save.stdout.close()
        save.wait(60)
        assert load.returncode == 0 and save.returncode == 0, load.stderr

    def node_id(self) -> str:
        return _docker("info", "--format", "{{.Swarm.NodeID}}", host=self.host).stdout.strip()

    def stop(self) -> None:
        """Undo everything, each step on its own (one failing does not stop the others)."""
        steps = [("node B leaves", lambda: _docker("swarm", "leave", "--force", host=self.host))]
        if self.swarm_created:
            steps += [("the manager leaves", lambda: _docker("swarm", "leave", "--force")),
                      ("docker_gwbridge", self._remove_gwbridge)]
        steps += [("dockerd", self._stop_dockerd), ("files", self._remove_files),
                  ("veth", lambda: self._ip("link", "del", self.veth_host)),
                  ("netns", lambda: self._ip("netns", "del", self.netns)),
                  ("cgroups", self._remove_cgroups)]
        for what, step in steps:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - report, and go on tearing down
                print(f"node B teardown, {what}: {exc}")

    def _remove_gwbridge(self) -> None:
        if self.gwbridge_existed:
            return
        deadline = time.monotonic() + 15
        while "docker_gwbridge" in engine_state()[1] and time.monotonic() < deadline:
            _docker("network", "rm", "docker_gwbridge")
            time.sleep(0.25)

    def _stop_dockerd(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def _remove_files(self) -> None:
        for root in (self.exec_root, self.root):
            mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                      if line.split()[1].startswith(str(root))]
            for mount in sorted(mounts, key=len, reverse=True):
                subprocess.run(["umount", "-l", mount], capture_output=True, timeout=30)
            shutil.rmtree(root, ignore_errors=True)
        Path(self.socket).unlink(missing_ok=True)
        self.log.unlink(missing_ok=True)

    def _remove_cgroups(self) -> None:
        for top in Path("/sys/fs/cgroup").glob(f"*/{self.cgroup}"):
            for sub in sorted((p for p in top.rglob("*") if p.is_dir()),
                              key=lambda p: len(p.parts), reverse=True):
                sub.rmdir()
            top.rmdir()
        if (Path("/sys/fs/cgroup") / self.cgroup).is_dir():
            (Path("/sys/fs/cgroup") / self.cgroup).rmdir()

    def leftovers(self) -> list[str]:
        found = []
        if subprocess.run(["ip", "netns", "list"], capture_output=True,
                          text=True).stdout.count(self.netns):
            found.append(self.netns)
        if Path(f"/sys/class/net/{self.veth_host}").exists():
            found.append(self.veth_host)
        found += [str(p) for p in (self.root, self.exec_root, Path(self.socket)) if p.exists()]
        if self.proc is not None and self.proc.poll() is None:
            found.append(f"dockerd pid {self.proc.pid}")
        return found


@pytest.fixture
def two_nodes(engine):
    reason = NodeB.unavailable()
    if reason:
        SKIPPED.append(f"two-node swarm: {reason}")
        need("a second Docker engine", reason)
    before = engine_state()
    node = NodeB()
    try:
        try:
            node.start()
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            # This machine cannot host a second engine: not what the test is about.
            SKIPPED.append(f"two-node swarm: {exc}")
            need("a second Docker engine", str(exc))
        node.form_swarm()
        node.load_image("scalecheck/hello:latest")
        yield node
    finally:
        node.stop()
    assert node.leftovers() == []
    assert engine_state() == before


def test_two_nodes_requests_reach_tasks_on_both(two_nodes, tmp_path):
    """The harness on a swarm it did not start (manager = the test's engine, a worker in
    a network namespace): tasks on both nodes, reached through the loopback Traefik on
    the manager, the counter in Redis on the manager right; a task that dies on the
    worker is noticed from Swarm's task list (its container's events stay on the worker)."""
    import docker

    from loadtest.stack import StackError
    from loadtest.stack.docker.swarm.stack import SwarmStack

    client = docker.from_env()
    worker = two_nodes.node_id()
    port = free_port()
    stack = SwarmStack(port=port, api_port=free_port(), log_dir=tmp_path / "logs")
    try:
        stack.up(2)
        assert stack.describe()["swarm_created"] is False
        stack.scale(4)
        nodes = {f"{stack.service}.{t['Slot']}.{t['ID']}": t["NodeID"] for t in client.api.tasks(
            filters={"service": stack.service, "desired-state": "running"})}
        assert set(nodes.values()) == {worker, stack.describe()["swarm_node"]}, nodes
        answers = _visit(port, 40)
        served = {a["hostname"] for a in answers}
        assert served == {r.hostname for r in stack.replicas()} and len(served) == 4
        assert {nodes[h] for h in served} == set(nodes.values())  # both nodes answered
        assert all(a["counter_error"] is None for a in answers)
        assert sorted(a["visits"] for a in answers) == list(range(1, 41))
        assert stack.read_counter() == 40 == stack._counter_over_network()
        remote = sorted(h for h, n in nodes.items() if n == worker)[0]
        with pytest.raises(StackError, match="runs on node"):
            stack.kill_replica(remote)
        victim = docker.DockerClient(base_url=two_nodes.host).containers.list(
            filters={"label": f"com.docker.swarm.task.name={remote}"})[0]
        victim.kill()
        died = _events(stack, "replica_died", 30, hostname=remote)[0]
        assert died["node"] == worker and died["returncode"] == 137
        _events(stack, "task_rescheduled", 20, replacing=remote)
        assert stack.scale(4).level == 4
    finally:
        stack.down()
    assert leftovers(stack.stack_name) == []
