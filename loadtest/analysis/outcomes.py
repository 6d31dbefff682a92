"""Each record's outcome, as Jepsen classifies an operation, and the attempts it hid.

For every record (``classify``):

- ok: a counter value came back (an app without a counter: it answered, below 400);
- fail: it surely never reached the app (``never_reached``: connection refused, or
  the balancer's own answer without a replica name: 503 "no server available", 404
  "no route", which a restarting Traefik gives before it has loaded its routes); for
  an app without a counter, also an answer 4xx from the app itself (a 409 Conflict: a
  definite refusal, nothing done);
- unknown: anything else without a value (timeouts, resets, 502/504, a Redis
  error inside the app): it may or may not have taken effect.

For an operation a scenario declared (``operation_outcome``), as HTTP means the status:
a 2xx or 3xx took effect (ok), a 4xx did not (fail: the app refused it; a compare-and-set
answered 409 or 412 *compared and failed*, a definite answer that changed nothing), a
5xx, a reset or a timeout may have (unknown); what never reached the app failed. What
the scenario declared (``loadtest.ops.outcome``) wins over all of this.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NO_SERVER_STATUSES = (404, 503)
COMPARE_FAILED_STATUSES = (409, 412)  # Conflict, Precondition Failed: the compare failed
DECLARED = ("ok", "fail", "unknown", "swapped", "compare-failed")  # loadtest.ops.OUTCOMES


class OutcomeError(ValueError):
    """A declared outcome the analysis cannot read (the message is one line)."""


def operation_outcome(f: str, status: int, never_reached: bool, declared: str | None = None
                      ) -> tuple[str, bool | None]:
    """(outcome, swapped) of one declared operation: ``ok``, ``fail`` or ``unknown``, and
    for a ``cas`` with outcome ok whether it swapped (True) or its compare failed (False);
    None for every other operation. ``never_reached``: the balancer answered itself or the
    connection was refused (see ``classify``)."""
    if declared is not None:
        if declared not in DECLARED:
            raise OutcomeError(f"outcome {declared!r} is not one of {', '.join(DECLARED)}")
        if declared in ("swapped", "compare-failed") and f != "cas":
            raise OutcomeError(f"outcome {declared!r} is a cas's, not a {f}'s")
        if declared in ("fail", "unknown"):
            return declared, None
        return "ok", (declared != "compare-failed") if f == "cas" else None
    if never_reached:
        return "fail", None
    if status <= 0 or status >= 500:
        return "unknown", None
    if status < 400:
        return "ok", True if f == "cas" else None
    if f == "cas" and status in COMPARE_FAILED_STATUSES:
        return "ok", False
    return "fail", None


def classify(df: pd.DataFrame, counted: bool = True
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean masks (ok, fail, unknown), one entry per record. ``counted``: the app
    carries a counter, and only a value that came back is ok; an app without one (its
    counter field ``none``) is ok where it answered below 400, and failed where it
    answered 4xx itself."""
    status = df["status"].to_numpy()
    ok = df["counter"].notna().to_numpy() if counted else (status > 0) & (status < 400)
    fail = ~ok & never_reached(df)
    if not counted:
        fail |= (status >= 400) & (status < 500)
    return ok, fail, ~ok & ~fail


def never_reached(df: pd.DataFrame) -> np.ndarray:
    """Records that surely never reached the app: a refused connection, or the balancer's
    own 404/503 with no replica named."""
    status = df["status"].to_numpy()
    refused = (status == 0) & matches(df["error"], r"ConnectionRefused|Connection refused")
    no_server = np.isin(status, NO_SERVER_STATUSES) & df["hostname"].isna().to_numpy()
    return refused | no_server


def matches(series: pd.Series, pattern: str) -> np.ndarray:
    """Regex match on a (categorical) string column, evaluated once per distinct value."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        cats = series.cat.categories
        if len(cats) == 0:
            return np.zeros(len(series), dtype=bool)
        hit = np.asarray(pd.Series(cats.astype(str)).str.contains(pattern, regex=True))
        codes = series.cat.codes.to_numpy()
        return np.where(codes >= 0, hit[np.clip(codes, 0, None)], False)
    return series.astype("string").str.contains(pattern, regex=True).fillna(False).to_numpy()


def hidden_attempts(df: pd.DataFrame) -> np.ndarray:
    """Per record, the attempts it put on the wire beyond the one that answered (a client's
    silent resend): each may have reached the app, an unknown outcome. 0 where not counted."""
    if "attempts" not in df:
        return np.zeros(len(df), dtype=np.int64)
    attempts = df["attempts"].to_numpy(dtype=float, na_value=np.nan)
    return np.where(np.isnan(attempts), 0, np.maximum(attempts - 1, 0)).astype(np.int64)


def attempts_counted(df: pd.DataFrame) -> int:
    """How many records say how many attempts they took."""
    return int(df["attempts"].notna().sum()) if "attempts" in df else 0
