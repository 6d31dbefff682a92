"""The Docker Swarm backend: the stack file deployed on a swarm, a loopback Traefik in
front."""
