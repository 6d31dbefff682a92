"""The embedded stack's replicas as processes: started, handed to the balancer once they
answer their health path, and on the way down taken out of rotation, drained, then stopped.

Functions of a ``LocalStack`` (its app, its balancer, its cgroups, its event log): what a
replica's life is, apart from the stack's verbs.
"""

from __future__ import annotations

import logging
import subprocess
import time

from loadtest.contract import events as ev
from loadtest.stack import processes
from loadtest.stack.base import Replica, StackError, free_port
from loadtest.stack.embedded.app import beyond_loopback, listening_ports

log = logging.getLogger("scalecheck")


class ReplicaProcess:
    """A replica and the process that is it (its process group, for signals)."""

    def __init__(self, replica: Replica, popen: subprocess.Popen) -> None:
        self.replica = replica
        self.popen = popen


def add(stack, count: int) -> list[str]:
    """Start ``count`` replicas, then put each in the balancer once it is healthy.

    Spawned from the calling thread on purpose: the parent-death signal
    fires when the *thread* that forked exits, so no worker threads here.
    """
    prefix = stack.app.name_prefix
    pending = [_spawn(stack, f"{prefix}-{_take_id(stack)}") for _ in range(count)]
    added = []
    deadline = time.monotonic() + stack.ready_timeout
    attempts = {proc.replica.hostname: 1 for proc in pending}
    while pending:
        for proc in list(pending):
            port = int(proc.replica.address.rsplit(":", 1)[1])
            if proc.popen.poll() is not None:
                # Lost a race for its port, or crashed: retry a couple of times.
                name = proc.replica.hostname
                if attempts[name] >= 3:
                    raise StackError(f"replica {name} would not start (exit code "
                                     f"{proc.popen.returncode}); see {_log(stack, name)}")
                attempts[name] += 1
                pending[pending.index(proc)] = _spawn(stack, name)
            elif stack.app.healthy(port):
                pending.remove(proc)
                _say_if_open(stack, proc)
                stack._lb.add(proc.replica.hostname, proc.replica.address)
                proc.replica.state = "up"
                stack._routed_since[proc.replica.hostname] = time.time()
                stack._event(ev.REPLICA_ADDED, hostname=proc.replica.hostname,
                             address=proc.replica.address, pid=proc.popen.pid)
                added.append(proc.replica.hostname)
        if pending and not stack.app.ours:
            _refuse_wrong_port(pending)
        if pending and time.monotonic() > deadline:
            first = pending[0].replica.hostname
            names = ", ".join(p.replica.hostname for p in pending)
            what = stack.app.check_path or "/ (below 500)"
            raise StackError(f"replica(s) {names} never became healthy: no answer on "
                             f"{what} within {stack.ready_timeout:.0f}s; see "
                             f"{_log(stack, first)}")
        if pending:
            time.sleep(0.05)
    return added

def _refuse_wrong_port(pending: list[ReplicaProcess]) -> None:
    """A command that listens, but not where it was told: it uses neither {port} nor
    PORT (two replicas would fight over one port). Said at once, not after a timeout."""
    for proc in pending:
        port = int(proc.replica.address.rsplit(":", 1)[1])
        ports = listening_ports(proc.popen.pid)
        if ports and port not in ports:
            raise StackError(f"replica {proc.replica.hostname} listens on port "
                             f"{', '.join(map(str, sorted(ports)))}, not on {port}: "
                             "--app-cmd must use {port}, or the app must read PORT")

def _say_if_open(stack, proc: ReplicaProcess) -> None:
    """Once per stack: the user's app listens beyond loopback (its own choice, left as it
    is), so anyone who reaches this machine reaches the replicas past the balancer."""
    if stack.app.ours or getattr(stack, "_said_open", False):
        return
    wide = beyond_loopback(proc.popen.pid)
    if wide:
        stack._said_open = True
        log.warning(f"scalecheck: replica {proc.replica.hostname} listens on "
                    f"{', '.join(wide)}, beyond loopback: reachable past the balancer from "
                    "other machines (bind it to 127.0.0.1: --host 127.0.0.1, or your app's "
                    "own setting)")


def _log(stack, name: str) -> str:
    return str(stack.log_dir / f"{name}.log")

def _take_id(stack) -> int:
    stack._next_id += 1
    return stack._next_id - 1

def _spawn(stack, hostname: str) -> ReplicaProcess:
    port = free_port()
    env = stack.app.environment(stack.app_env, hostname, port, stack.store.address_port,
                                stack.store.password)
    try:
        popen = processes.spawn(stack.app.argv(port), stack.log_dir / f"{hostname}.log",
                                env=env, cwd=stack.app.working_dir(),
                                preexec=stack.cgroups.prepare(hostname)
                                if stack.cgroups is not None else None)
    except OSError as exc:
        raise StackError(f"--app-cmd cannot be started: {exc.strerror or exc}") from None
    replica = Replica(hostname, f"127.0.0.1:{port}", "starting", popen.pid, time.time())
    proc = ReplicaProcess(replica, popen)
    stack._replicas[hostname] = proc
    return proc

def remove(stack, victims: list[ReplicaProcess]) -> None:
    """Take all victims out of rotation at once, let what is in flight finish, then
    stop them: no request is cut, and a scale-down by k replicas takes about as
    long as one by one."""
    names = {p.replica.hostname for p in victims}
    for proc in victims:
        proc.replica.state = "draining"
        stack._routed_since.pop(proc.replica.hostname, None)
    stack._lb.begin_removal(names)
    for proc in victims:
        stack._event(ev.REPLICA_REMOVING, hostname=proc.replica.hostname)
    left = time.monotonic()
    stack._lb.wait_idle(names, stack.drain_timeout)
    stack._lb.finish_removal(names)
    # What a preStop pause does in a cluster: time for requests already on their way.
    time.sleep(max(0.0, stack.app.drain_time - (time.monotonic() - left)))
    processes.stop_all([proc.popen for proc in victims], timeout=stack.app.stop_grace)
    for proc in victims:
        proc.replica.state = "removed"
        if stack.cgroups is not None:
            stack.cgroups.release(proc.replica.hostname)
        stack._event(ev.REPLICA_REMOVED, hostname=proc.replica.hostname)
