"""The harness's roles in a Locust process: the controller of a run (local or master),
or a worker. See ``loadtest.harness``."""

from loadtest.harness.roles.controller import ControllerRole
from loadtest.harness.roles.master import MasterRole
from loadtest.harness.roles.worker import WorkerRole

__all__ = ["ControllerRole", "MasterRole", "WorkerRole"]
