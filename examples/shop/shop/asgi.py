"""The app for an ASGI server's command line: ``uvicorn shop.asgi:app --port 5000``.

Without ``python -m shop``'s drain: on SIGTERM uvicorn stops accepting at once,
finishes the requests in flight, then stops.
"""

from shop.app import create_app

app = create_app()
