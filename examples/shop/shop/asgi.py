"""The app for an ASGI server's command line: ``uvicorn shop.asgi:app --port 5000``.

Without ``python -m shop``'s drain: on SIGTERM uvicorn stops accepting at once,
finishes the requests in flight, then stops.
"""

import sys

from shop.app import create_app
from shop.settings import SettingsError, settings_from_env

try:
    app = create_app(settings_from_env())
except SettingsError as exc:  # one line, not an import traceback
    print(f"shop: {exc}", file=sys.stderr)
    sys.exit(2)
