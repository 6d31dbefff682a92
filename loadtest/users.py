"""What a locustfile imports to have its users recorded in full: ``ScalecheckHttpUser``
(a ``FastHttpUser`` that counts every attempt on the wire, times requests out and records
those the run's end cuts short). The scenario-facing name of ``loadtest.harness.users``."""

from loadtest.harness.users import ScalecheckHttpUser

__all__ = ["ScalecheckHttpUser"]
