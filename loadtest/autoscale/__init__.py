"""The autoscaler: policies from real systems, fed live metrics from the stack.

- ``hpa``: Kubernetes' Horizontal Pod Autoscaler (replica calculator,
  tolerance, stabilisation windows, behavior policies), as a pure function.
- ``kpa``: Knative's autoscaler (stable and panic windows), as a pure function.
- ``metrics``: where each metric comes from while the run goes on.
- ``controller``: samples the metrics, calls the policy on its period, and
  records every decision with all its intermediate values.
"""
