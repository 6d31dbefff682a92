"""A Locust plugin for the sampler benchmark: runs ``CpuSampler`` between test start and
stop when $SCALECHECK_SAMPLER_PARTS names the parts (JSON), and writes what it cost to
$SCALECHECK_SAMPLER_OUT. Loaded in both arms of the comparison, so that only the
sampler's running differs between them."""

from __future__ import annotations

import json
import os

from locust import events

from loadtest.harness.sampler import CpuSampler

_state: dict = {}


@events.test_start.add_listener
def _(environment, **_kwargs):
    parts = os.environ.get("SCALECHECK_SAMPLER_PARTS")
    if not parts:
        return
    others = json.loads(parts)
    sampler = CpuSampler(lambda: {"generator": [os.getpid()], **others})
    sampler.register(environment)
    sampler.start()
    _state["sampler"] = sampler


@events.test_stop.add_listener
def _(environment, **_kwargs):
    sampler = _state.pop("sampler", None)
    path = os.environ.get("SCALECHECK_SAMPLER_OUT")
    if sampler is None or not path:
        return
    sampler.stop()
    result = sampler.result()
    with open(path, "w") as fh:
        json.dump({"own_cpu_s": sampler.own_cpu_s, "readings": sampler.readings,
                   "cpu": result}, fh)
