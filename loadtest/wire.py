"""The two headers by which the harness learns which replica served a request.

- ``X-Scalecheck-Id``: sent with every request by ``ScalecheckHttpUser``, unique in the
  run; Traefik keeps it in its access log beside the server that answered, so each
  record can be joined to its server after the run (Traefik cannot put the chosen
  server into a response header).
- ``X-Scalecheck-Server``: set by the HAProxy the harness runs on every answer, to the
  name of the server (the replica) that gave it.
"""

REQUEST_ID_HEADER = "X-Scalecheck-Id"
SERVER_HEADER = "X-Scalecheck-Server"
