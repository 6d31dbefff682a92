"""A small shop: a catalogue and carts over Redis, served by uvicorn.

It is an ordinary app of the kind a team has, used by scalecheck's tests as an
app that is not scalecheck's own: Starlette rather than Flask, uvicorn rather
than gunicorn, its Redis under another name (``cache``), and no hostname in its
answers (which replica served a request is for the balancer to say).

    python -m shop                        # PORT (5000), REDIS_URL, BIND_HOST
    uvicorn shop.asgi:app --port 5000     # the same app, without the SIGTERM drain
"""

from shop.app import create_app
from shop.settings import Settings, settings_from_env

__all__ = ["Settings", "create_app", "settings_from_env"]
