"""A throwaway single-node Kubernetes that the project builds and starts itself.

``Cluster(workdir)`` (cluster.py) is the entry point; the other modules each
answer one question: where things live (layout), certificates (pki), command
lines (components), config files (configs), images without a registry
(images), the cluster's DNS (dns), host networking (network), processes (processes), one cluster per
machine (machine), removal (sweep) and checking that nothing is left
(leftovers).
"""

from loadtest.stack.kubernetes.cluster import Cluster, ClusterError, stop_all
from loadtest.stack.kubernetes.layout import Settings
from loadtest.stack.kubernetes.machine import MachineBusy

__all__ = ["Cluster", "ClusterError", "MachineBusy", "Settings", "stop_all"]
