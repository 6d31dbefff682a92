"""The Docker backends' shared parts.

- ``engine``: the client, the CLIs, images and their stand-ins, containers, Redis inside one;
- ``base``: ``DockerStack``, what Compose and Swarm do the same way;
- ``composefile``: the user's Compose file as the harness runs it (its balancer added).
"""
