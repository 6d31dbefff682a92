"""The shop's configuration, read once from the environment.

Every knob has a default that works on a developer's machine; Compose and the
embedded stack set the rest.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

FAULTS = ("", "errors", "slow")


class SettingsError(ValueError):
    """A setting that cannot be used; its message is one line for the operator."""


@dataclass(frozen=True)
class Settings:
    port: int = 5000
    bind_host: str = "0.0.0.0"
    redis_url: str = "redis://localhost:6379/0"
    #: Seconds a Redis command may take before the request fails (503).
    redis_timeout: float = 0.5
    #: What each request (other than /healthz) costs: CPU burnt and time waited, in ms.
    cpu_ms: float = 0.0
    wait_ms: float = 0.0
    #: The faulty variant: "" (none), "errors" or "slow"; one replica of those running has it.
    fault: str = ""
    fault_error_rate: float = 0.2
    fault_slow_factor: float = 10.0
    #: After SIGTERM: /healthz fails and requests are still served this long, then the stop.
    drain_seconds: float = 0.0
    log_level: str = "info"
    #: One log line per request (uvicorn's access log); off by default, it costs CPU under load.
    access_log: bool = False


def settings_from_env(env: Mapping[str, str] = os.environ) -> Settings:
    """Read the settings; ``REDIS_HOST``/``REDIS_PORT``, when set, replace the host and port
    of ``REDIS_URL`` (its database and password stay)."""
    try:
        return Settings(
            port=_int(env, "PORT", 5000),
            bind_host=env.get("BIND_HOST") or "0.0.0.0",
            redis_url=redis_url(env),
            redis_timeout=_number(env, "REDIS_TIMEOUT", 0.5),
            cpu_ms=_number(env, "CPU_MS", 0.0),
            wait_ms=_number(env, "WAIT_MS", 0.0),
            fault=_fault(env.get("FAULT", "")),
            fault_error_rate=_share(env, "FAULT_ERROR_RATE", 0.2),
            fault_slow_factor=_factor(env, "FAULT_SLOW_FACTOR", 10.0),
            drain_seconds=_number(env, "DRAIN_SECONDS", 0.0),
            log_level=(env.get("LOG_LEVEL") or "info").lower(),
            access_log=(env.get("ACCESS_LOG") or "").lower() in ("1", "true", "yes", "on"),
        )
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def redis_url(env: Mapping[str, str]) -> str:
    """``REDIS_URL`` with ``REDIS_HOST`` and ``REDIS_PORT`` applied over it."""
    url = env.get("REDIS_URL") or "redis://localhost:6379/0"
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"REDIS_URL must start with redis://, rediss:// or unix://, not {url!r}")
    host, port = env.get("REDIS_HOST"), env.get("REDIS_PORT")
    if not host and not port:
        return url
    if parts.scheme == "unix":
        raise ValueError("REDIS_HOST/REDIS_PORT cannot apply to a unix:// REDIS_URL")
    host = host or parts.hostname or "localhost"
    port_number = _int(env, "REDIS_PORT", parts.port or 6379)
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}:{port_number}" if userinfo else f"{host}:{port_number}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {raw!r}") from None
    if not 0 < value < 65536:
        raise ValueError(f"{name} must be between 1 and 65535, not {raw!r}")
    return value


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {raw!r}") from None
    if not 0 <= value < float("inf"):
        raise ValueError(f"{name} must be zero or more, not {raw!r}")
    return value


def _share(env: Mapping[str, str], name: str, default: float) -> float:
    value = _number(env, name, default)
    if value > 1:
        raise ValueError(f"{name} is a share between 0 and 1, not {value}")
    return value


def _factor(env: Mapping[str, str], name: str, default: float) -> float:
    value = _number(env, name, default)
    if value < 1:
        raise ValueError(f"{name} must be 1 or more (a slowdown), not {value}")
    return value


def _fault(raw: str) -> str:
    value = raw.strip().lower()
    if value in ("none", "off", "0"):
        value = ""
    if value not in FAULTS:
        raise ValueError(f"FAULT must be errors or slow (or empty), not {raw!r}")
    return value
