"""Variables in a Compose file, replaced as Compose replaces them, for the tests that read
our Compose files where no ``docker compose``/``docker-compose`` is installed.

The rules are the Compose specification's (interpolation): ``$$`` is a dollar;
``$VAR`` and ``${VAR}``; ``${VAR:-default}`` (unset or empty) and ``${VAR-default}``
(unset); ``${VAR:?message}`` and ``${VAR?message}`` (an error); ``${VAR:+other}`` and
``${VAR+other}``. Only values are replaced, never keys, as Compose does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_TOKEN = re.compile(r"\$(?:(?P<dollar>\$)|(?P<bare>[A-Za-z_][A-Za-z0-9_]*)|"
                    r"\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\})")


class InterpolationError(ValueError):
    """A ``${VAR?message}`` whose variable is missing."""


def interpolate(value, env: Mapping[str, str]):
    """``value`` (a parsed Compose file, or any part of it) with its variables replaced."""
    if isinstance(value, str):
        return _text(value, env)
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    return value


def _text(text: str, env: Mapping[str, str]) -> str:
    def one(match: re.Match) -> str:
        if match.group("dollar"):
            return "$"
        name = match.group("bare") or match.group("name")
        op, arg = match.group("op"), match.group("arg") or ""
        present = name in env
        filled = present and env[name] != ""
        if op is None:
            return env.get(name, "")
        if op in (":-", "-"):
            return env[name] if (filled if op == ":-" else present) else _text(arg, env)
        if op in (":+", "+"):
            return _text(arg, env) if (filled if op == ":+" else present) else ""
        if not (filled if op == ":?" else present):
            raise InterpolationError(f"{name}: {arg or 'required'}")
        return env[name]

    return _TOKEN.sub(one, text)
