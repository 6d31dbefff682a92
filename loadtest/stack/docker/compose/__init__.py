"""The Docker Compose backend: the user's Compose file, unchanged, run as a copy with the
harness's balancer added."""
