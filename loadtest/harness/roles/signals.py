"""Ctrl-C and SIGTERM, at any moment of a run.

Until the stack is up they only set a flag (``SignalGate.caught``): bringing the stack
up runs in a greenlet that is stopped cleanly when the flag is seen (an exception raised
from a signal handler could land in any greenlet, at any time). From then on both do
what Ctrl-C does in Locust: a KeyboardInterrupt in the main greenlet, where Locust waits
for the test; it then writes its report and quits, and the record is concluded then.
(Locust's own SIGTERM handler never fires here: the signal ended Locust at once, leaving
run.json 'running'.) An interrupted run never exits 0: 130 (SIGINT) or 143 (SIGTERM).
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import gevent
import greenlet

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_code(name: str | None) -> int:
    return 130 if name == "SIGINT" else 143


class SignalGate:
    def __init__(self) -> None:
        self.caught: str | None = None
        self._previous = {sig: signal.getsignal(sig) for sig in SIGNALS}

        def on_signal(signum, _frame):
            self.caught = self.caught or signal.Signals(signum).name

        for sig in SIGNALS:
            signal.signal(sig, on_signal)

    def release(self, set_code: Callable[[int], None]) -> None:
        """From now on, a signal interrupts the main greenlet; ``set_code`` chooses the exit
        code (unless a failure already chose one)."""
        main = greenlet.getcurrent()

        def interrupt(signum, _frame):
            set_code(130 if signum == signal.SIGINT else 143)
            gevent.get_hub().loop.run_callback(main.throw, KeyboardInterrupt)

        for sig in SIGNALS:
            signal.signal(sig, interrupt)
