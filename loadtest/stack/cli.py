"""``python -m loadtest.stack`` (or ``scalecheck stack``): the workshop by hand.

    python -m loadtest.stack up --scale 3      # foreground; Ctrl-C stops it all
    python -m loadtest.stack up -d --scale 3   # in the background
    python -m loadtest.stack ps                # replicas and what the balancer thinks of them
    python -m loadtest.stack scale 5           # like `docker compose up -d --scale hello=5`
    python -m loadtest.stack logs [hello-2]
    python -m loadtest.stack down

Then open http://localhost:4000 and reload: the hostname changes with every
visit and the counter goes up. ``up`` takes ``--balancer traefik|haproxy``
(Traefik by default, its dashboard on http://localhost:8080) and ``--stack``
for any backend the harness has (local by default; compose and swarm need
Docker). One process (the one ``up`` starts) owns the stack; the other
commands talk to it over a Unix socket, so replicas never outlive it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loadtest.contract.names import add_renamed
from loadtest.contract.plan import seconds
from loadtest.stack import (
    BACKENDS,
    Stack,
    StackSettings,
    backend_class,
    make_stack,
    private,
    processes,
)
from loadtest.stack.base import BALANCERS, BalancerView, StackError, app_arguments

STATE_DIR = Path(".scalecheck")


def _socket_path(state_dir: Path) -> str:
    """The supervisor's socket, keyed by the project directory, in a directory of mode 0700
    of this user: commands scale and stop the stack, so no other local user may send one
    (an abstract socket, as this was, carries no permissions at all)."""
    key = hashlib.sha1(str(state_dir.resolve()).encode()).hexdigest()[:12]
    return str(Path(tempfile.gettempdir()) / f"scalecheck-stack-{os.getuid()}-{key}" / "sock")


def _own_private_dir(path: Path) -> None:
    """Make (or check) the socket's directory: ours, and closed to everyone else."""
    path.mkdir(mode=0o700, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or \
            stat.S_IMODE(info.st_mode) & 0o077:
        raise StackError(f"{path} is not a private directory of this user: remove it")


def _running(state_dir: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(_socket_path(state_dir))
            return True
        except OSError:
            return False


def _request(state_dir: Path, command: dict, timeout: float = 120) -> dict | None:
    """Send one command to the running stack; None when no stack runs here."""
    path = _socket_path(state_dir)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            return None
        sock.sendall(json.dumps(command).encode() + b"\n")
        data = sock.makefile("rb").readline()
    return json.loads(data) if data else {"error": "the stack closed the connection"}


class Supervisor:
    """Owns the stack and answers commands, one at a time, on the main thread."""

    def __init__(self, stack: Stack, state_dir: Path) -> None:
        self.stack = stack
        self.state_dir = state_dir
        self.path = _socket_path(state_dir)
        self.running = True

    def serve(self) -> None:
        _own_private_dir(Path(self.path).parent)
        Path(self.path).unlink(missing_ok=True)  # a killed supervisor's, nobody answers it
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(self.path)
        server.listen(4)
        server.settimeout(0.5)
        try:
            while self.running:
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    self._watch()
                    continue
                with conn:
                    conn.settimeout(120)
                    try:
                        line = conn.makefile("rb").readline()
                        reply = self.handle(json.loads(line or b"{}"))
                    except (ValueError, OSError) as exc:
                        reply = {"error": f"bad request: {exc}"}
                    try:
                        conn.sendall(json.dumps(reply).encode() + b"\n")
                    except OSError:
                        pass
        finally:
            self.server = server  # closed only once the stack is down (see cmd_up)

    def _watch(self) -> None:
        """Notice a replica or the balancer that stopped on its own, and say so."""
        try:
            for event in self.stack.poll():
                print(f"stack: {event['event'].replace('_', ' ')}: "
                      f"{event.get('hostname') or event.get('balancer') or ''}", flush=True)
        except StackError as exc:
            print(f"stack: watching: {exc}", flush=True)

    def handle(self, command: dict) -> dict:
        try:
            match command.get("cmd"):
                case "ps":
                    return self.status()
                case "scale":
                    result = self.stack.scale(int(command["replicas"]))
                    return {**self.status(), "ready_after_s": round(result.ready - result.asked, 3),
                            "added": result.added, "removed": result.removed}
                case "down":
                    self.running = False
                    return {"stopping": True}
                case other:
                    return {"error": f"unknown command {other!r}"}
        except StackError as exc:
            return {"error": str(exc)}

    def status(self) -> dict:
        try:
            view = {row.server: row for row in self.stack.balancer_view()} \
                if isinstance(self.stack, BalancerView) else {}
        except StackError:
            view = {}
        described = self.stack.describe()
        return {
            "url": self.stack.url,
            "balancer": described.get("balancer"),
            "balancer_api": described.get("balancer_api"),
            "log_dir": str(self.stack.log_dir),
            "replicas": [{**r.to_dict(),
                          "balancer": view[r.hostname].status if r.hostname in view else "-",
                          "served": view[r.hostname].served if r.hostname in view and
                          view[r.hostname].served is not None else "-"}
                         for r in self.stack.replicas()],
        }


def cmd_up(args) -> int:
    state_dir = args.project_dir / STATE_DIR
    if _request(state_dir, {"cmd": "ps"}, timeout=5) is not None:
        print("a stack is already running here; `scale` it, or `down` it first", file=sys.stderr)
        return 2
    if args.detach:
        return _up_detached(args, state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    options = {a.dest: getattr(args, a.dest) for a in _backend_actions() if hasattr(args, a.dest)}
    try:
        stack = make_stack(args.stack, StackSettings(
            port=args.stack_port, balancer=args.balancer, api_port=args.api_port or None,
            workdir=state_dir / "stack", log_dir=state_dir / "logs",
            app_port=args.app_port or None, health_path=args.health_path or None,
            counter_read=args.counter_read or None,
            ready_timeout=_seconds(args.ready_timeout) if args.ready_timeout else None,
            options=options))
    except StackError as exc:
        print(f"stack: error: {exc}", file=sys.stderr)
        return 2
    supervisor = Supervisor(stack, state_dir)

    def stop(_signum, _frame):
        supervisor.running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        stack.up(args.scale)
        api = stack.describe().get("balancer_api")
        print(f"stack up: {args.scale} replica(s) behind {stack.balancer} at {stack.url}"
              + (f" (dashboard/stats: {api})" if api else "")
              + f"; logs in {stack.log_dir}; Ctrl-C or `python -m loadtest.stack down` stops it",
              flush=True)
        supervisor.serve()
    except StackError as exc:
        print(f"stack: error: {exc}", file=sys.stderr)
        return 2
    finally:
        stack.down()
        if getattr(supervisor, "server", None) is not None:
            supervisor.server.close()  # tells `down` that everything has stopped
        private.remove(Path(supervisor.path).parent)
    print("stack down", flush=True)
    return 0


def _up_detached(args, state_dir: Path) -> int:
    state_dir.mkdir(parents=True, exist_ok=True)
    log = open(state_dir / "supervisor.log", "ab")  # noqa: SIM115 - handed to the child
    # The child gets the user's own words (less -d), so every option, repeated ones too,
    # means there what it meant here.
    forwarded = [word for word in args.up_words if word not in ("-d", "--detach")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtest.stack", "--project-dir", str(args.project_dir.resolve()),
         "up", *forwarded],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "PYTHONPATH": processes.pythonpath_with_repo(dict(os.environ))},
    )
    log.close()
    # A backend may take longer to start (the embedded Kubernetes: a first build).
    deadline = time.monotonic() + getattr(backend_class(args.stack), "start_timeout", 60)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (state_dir / "supervisor.log").read_text().strip().splitlines()
            print(tail[-1] if tail else "stack: error: the stack did not start", file=sys.stderr)
            return 2
        status = _request(state_dir, {"cmd": "ps"}, timeout=5)
        if status is not None:
            print(f"stack up in the background: {len(status['replicas'])} replica(s) behind "
                  f"{status['balancer']} at {status['url']}"
                  + (f" (dashboard/stats: {status['balancer_api']})"
                     if status.get("balancer_api") else ""))
            return 0
        time.sleep(0.2)
    proc.terminate()
    print("stack: error: timed out waiting for the stack to start", file=sys.stderr)
    return 2


def _print_status(status: dict) -> None:
    print(f"{'NAME':<10} {'ADDRESS':<18} {'PID':>7} {'STATE':<8} {'BALANCER':<9} {'SERVED':>7}")
    for r in status["replicas"]:
        print(f"{r['hostname']:<10} {r['address']:<18} {r['pid'] or '-':>7} {r['state']:<8} "
              f"{r['balancer']:<9} {r['served']:>7}")
    print(f"balancer: {status.get('balancer') or '-'} at {status['url']}"
          + (f", dashboard/stats {status['balancer_api']}" if status.get("balancer_api") else ""))


def cmd_ps(args) -> int:
    status = _request(args.project_dir / STATE_DIR, {"cmd": "ps"})
    if status is None:
        print("no stack is running here (start one: python -m loadtest.stack up -d)")
        return 0
    _print_status(status)
    return 0


def cmd_scale(args) -> int:
    if args.replicas < 1:
        print("stack: error: scale to 1 replica or more", file=sys.stderr)
        return 2
    reply = _request(args.project_dir / STATE_DIR, {"cmd": "scale", "replicas": args.replicas})
    if reply is None:
        print("stack: error: no stack is running here (start one: python -m loadtest.stack up -d)",
              file=sys.stderr)
        return 2
    if "error" in reply:
        print(f"stack: error: {reply['error']}", file=sys.stderr)
        return 2
    _print_status(reply)
    print(f"ready after {reply['ready_after_s']} s"
          + (f"; added {', '.join(reply['added'])}" if reply["added"] else "")
          + (f"; removed {', '.join(reply['removed'])}" if reply["removed"] else ""))
    return 0


def cmd_down(args) -> int:
    state_dir = args.project_dir / STATE_DIR
    reply = _request(state_dir, {"cmd": "down"})
    if reply is None:
        print("nothing to stop")
        return 0
    deadline = time.monotonic() + 30
    while _running(state_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    print("stack down")
    return 0


def cmd_logs(args) -> int:
    log_dir = args.project_dir / STATE_DIR / "logs"
    names = [args.service] if args.service else sorted(p.stem for p in log_dir.glob("*.log"))
    if not names:
        print("no logs yet", file=sys.stderr)
        return 0
    for name in names:
        path = log_dir / f"{name}.log"
        if not path.exists():
            print(f"stack: error: no logs for {name!r}", file=sys.stderr)
            return 2
        for line in path.read_text(errors="replace").splitlines()[-args.tail:]:
            print(f"{name} | {line}")
    return 0


def _seconds(text: str) -> float:
    try:
        return seconds(text)
    except (ValueError, TypeError):
        print(f"stack: error: {text!r} is not a duration (e.g. 30s)", file=sys.stderr)
        sys.exit(2)


def _backend_actions() -> list[argparse.Action]:
    parser = argparse.ArgumentParser(add_help=False)
    for name in BACKENDS:
        backend_class(name).add_arguments(parser.add_argument)
    return list(parser._actions)


def _words_after_command(argv: list[str]) -> list[str]:
    """What the user wrote after the sub-command (``up ...``): the one global option,
    --project-dir, comes before it."""
    words = iter(enumerate(argv))
    for i, word in words:
        if word == "--project-dir":
            next(words, None)
        elif not word.startswith("-"):
            return argv[i + 1:]
    return []


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        print(f"stack: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    """The command line, built apart from ``main`` so that a test can read what a word
    means without starting a stack."""
    parser = _Parser(prog="python -m loadtest.stack", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project-dir", type=Path, default=Path.cwd(),
                        help="where the stack's state lives (default: here)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    up = sub.add_parser("up", help="start redis, N replicas and the balancer")
    up.add_argument("--scale", type=int, default=1, metavar="N", help="replicas (default 1)")
    add_renamed(up.add_argument, "--stack-port", old=["--port"], dest="stack_port", type=int,
                default=4000, metavar="PORT", help="balancer port on 127.0.0.1 (default 4000; "
                "the same name as under Locust; --port, its old name, works for one release)")
    up.add_argument("--stack", default="local", choices=[b for b in BACKENDS
                                                         if backend_class(b).controlled],
                    help="which stack (default: local, no Docker)")
    up.add_argument("--balancer", default="traefik", choices=BALANCERS,
                    help="the balancer (default: traefik)")
    up.add_argument("--api-port", type=int, default=0, metavar="PORT",
                    help="the balancer's dashboard/stats (default: 8080 if free)")
    up.add_argument("-d", "--detach", action="store_true", help="run in the background")
    app_arguments(up.add_argument)
    for name in BACKENDS:
        backend_class(name).add_arguments(up.add_argument)
    sub.add_parser("ps", help="list replicas")
    scale = sub.add_parser("scale", help="change the number of replicas")
    scale.add_argument("replicas", type=int)
    logs = sub.add_parser("logs", help="show logs (all, or one of hello-N, traefik, haproxy, "
                                       "redis)")
    logs.add_argument("service", nargs="?")
    logs.add_argument("--tail", type=int, default=50)
    sub.add_parser("down", help="stop everything")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.up_words = _words_after_command(argv)
    handler = {"up": cmd_up, "ps": cmd_ps, "scale": cmd_scale, "logs": cmd_logs,
               "down": cmd_down}[args.command]
    return handler(args)
