"""The harness's own balancers on this machine (Traefik, HAProxy), fed by the backends,
and one reading of a balancer's view."""
