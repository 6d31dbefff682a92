"""Names of the events a run records, in one place.

Stacks, the autoscaler and the fault injector append events to the run's
record (``run.json``: ``stack_events``); the analysis reads them back. Each
event is a dict with at least ``t`` (epoch seconds) and ``event`` (one of
these names).
"""

from __future__ import annotations

# Scaling, as the stack does it.
SCALE_ASKED = "scale_asked"            # level, previous, by ("plan", "autoscaler", "replace-dead")
SCALE_READY = "scale_ready"            # level, seconds, hostnames
SCALE_FAILED = "scale_failed"          # level, error

# Replicas, one by one.
REPLICA_ADDED = "replica_added"        # hostname, address; the balancer may route to it from now
REPLICA_REMOVING = "replica_removing"  # hostname; the balancer stops routing new requests to it
REPLICA_REMOVED = "replica_removed"    # hostname; stopped
REPLICA_DIED = "replica_died"          # hostname, returncode/reason; it stopped on its own
REPLICA_SIGNALLED = "replica_signalled"  # hostname, signal (a fault)

# Shared parts of the stack.
BALANCER_DIED = "balancer_died"        # balancer, returncode
STORE_DIED = "store_died"              # the shared store (Redis) stopped on its own

# Swarm adds its own view of tasks.
TASK_STARTED = "task_started"          # hostname, task, node
TASK_SHUTDOWN = "task_shutdown"        # hostname, task, state
TASK_RESCHEDULED = "task_rescheduled"  # hostname, task, replacing

# The autoscaler's decisions (every intermediate value; see loadtest.autoscale).
AUTOSCALE_DECISION = "autoscale_decision"

# Faults (see loadtest.faults): asked, applied, ended.
FAULT_ASKED = "fault_asked"
FAULT_APPLIED = "fault_applied"
FAULT_ENDED = "fault_ended"
FAULT_FAILED = "fault_failed"

# Ends of a replica's time in service, for the analysis.
OUT_OF_SERVICE = (REPLICA_REMOVING, REPLICA_DIED)
