"""The two headers by which the harness learns which replica served a request.

- ``X-Scalecheck-Id``: sent with every request by ``ScalecheckHttpUser``, unique in the
  run; Traefik keeps it in its access log beside the server that answered, so each
  record can be joined to its server after the run (Traefik cannot put the chosen
  server into a response header).
- ``X-Scalecheck-Server``: set by the HAProxy the harness runs on every answer, to the
  name of the server (the replica) that gave it.

Traefik's access log keeps only what ``loadtest.harness.names`` reads (``ACCESS_LOG_FIELDS``, and
the request's id): a line is ~170 bytes instead of ~820, a fifth of the room on the run
directory's disk, which the records need more.
"""

REQUEST_ID_HEADER = "X-Scalecheck-Id"
SERVER_HEADER = "X-Scalecheck-Server"
#: The fields of Traefik's JSON access log the harness keeps: when a request started, the
#: server that answered it, and its status (to read the log by hand).
ACCESS_LOG_FIELDS = ("StartUTC", "ServiceAddr", "DownstreamStatus")
