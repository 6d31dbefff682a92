"""The embedded stack: the app's replicas as processes on loopback, Redis, the harness's
balancer; no Docker."""
