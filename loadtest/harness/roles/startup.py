"""Bringing the stack up, interruptibly: Ctrl-C or SIGTERM while it starts stop it
cleanly (everything it started is stopped), and a stack that cannot start is one line."""

from __future__ import annotations

import gevent

from loadtest.harness.roles.signals import SignalGate, exit_code
from loadtest.stack import Stack, StackError


class StartFailed(Exception):
    """The stack did not come up; ``status`` and ``code`` say why for the record."""

    def __init__(self, message: str, status: str, code: int) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def bring_up(stack: Stack, level: int, gate: SignalGate) -> None:
    """Start ``stack`` at ``level`` replicas in a greenlet, watching ``gate``; raise
    ``StartFailed`` (after taking down what was started) when it does not come up."""

    def up() -> StackError | None:
        try:
            stack.up(level)
            return None
        except StackError as exc:  # returned, not raised: one line for the user
            return exc

    job = gevent.spawn(up)
    while not job.ready() and not gate.caught:
        job.join(timeout=0.05)
    error = None
    if gate.caught and not job.ready():
        job.kill(block=True)
    elif job.successful():
        error = job.value
    else:
        raise job.exception
    if gate.caught or error is not None:
        stack.down()
        if error is not None:
            raise StartFailed(str(error), "failed", 2)
        which = "Ctrl-C" if gate.caught == "SIGINT" else gate.caught
        raise StartFailed(f"{which} while the stack was starting; everything it started is "
                          "stopped", "interrupted", exit_code(gate.caught))
