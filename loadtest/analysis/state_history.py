"""The run's operations on the app's state (``loadtest.ops``), read from the records and
fed in time order to the state checkers, as the records stream by.

A record's operation becomes an ``Op``: its process is the client that sent it (worker /
user: one Locust user, whose requests are sequential), its replica the one that
answered, and its outcome what its HTTP status means (``outcomes.operation_outcome``): a
2xx took effect, a 4xx did not (a 409 or 412 to a compare-and-set: the compare failed),
a 5xx or no answer may have; what the scenario declared wins. A read that took effect
but recorded nothing it saw (no ``saw()``) saw nothing the checkers can use: it is
unknown. A record the checkers cannot read (an unknown operation, a compare-and-set
without ``[expected, new]``, an outcome that is no outcome) stops the analysis with one
line naming it, rather than being judged as the app's doing.
"""

from __future__ import annotations

import orjson

from loadtest.analysis.history import ALL_FS, OK, READ_FS, UNKNOWN, Op
from loadtest.analysis.outcomes import OutcomeError, operation_outcome
from loadtest.analysis.passes import Accumulator, Chunk, InputError
from loadtest.analysis.state_checks import StateCheckers
from loadtest.analysis.thresholds import Thresholds

_MISSING = object()  # a read whose record has no ``seen`` at all (saw() never called)


class StateHistory(Accumulator):
    def __init__(self, t: Thresholds, margin: float = 0.0) -> None:
        self.checkers = StateCheckers(max_states=t.linearizable_max_states,
                                      budget_s=t.linearizable_budget_s, margin=margin)
        self.index = 0
        self.t0: float | None = None

    def add(self, chunk: Chunk) -> None:
        if "op" not in chunk.df:
            return
        ops = chunk.df["op"]
        rows = ops.notna().to_numpy().nonzero()[0]
        if len(rows) == 0:
            return
        df = chunk.df
        fs, keys = ops.to_numpy()[rows], df["key"].to_numpy()[rows]
        values, seens = df["value"].to_numpy()[rows], df["seen"].to_numpy()[rows]
        declared = df["outcome"].to_numpy()[rows] if "outcome" in df else [None] * len(rows)
        for j, i in enumerate(rows.tolist()):
            if self.t0 is None:
                self.t0 = float(chunk.t_start[i])
            f, status = str(fs[j]), int(chunk.status[i])
            host = chunk.host_codes[i]
            user = int(chunk.user[i])
            worker = chunk.worker_names[chunk.worker_codes[i]]
            process = f"{worker}/user{-1 - user}" if user < -1 else f"{worker}/{user}"
            where = (f"the record of {process} at {float(chunk.t_start[i]) - self.t0:.3f} s "
                     f"from the first operation")
            value = _load(values[j])
            mark = declared[j]
            try:
                outcome, swapped = operation_outcome(
                    f, status, bool(chunk.unreached[i]),
                    None if _absent(mark) else str(mark))
            except OutcomeError as exc:
                raise InputError(f"{where}: {exc}") from None
            _validate(f, value, where)
            seen = _load(seens[j], _MISSING)
            if f == "read-counter" and outcome == OK and not _count(seen):
                raise InputError(f"{where}: a read-counter saw {_short(seen)}, not an "
                                 "integer (or null)")
            if f == "cas":
                seen = swapped
            elif seen is _MISSING:
                seen = None
                if outcome == OK and f in READ_FS:
                    outcome = UNKNOWN  # it answered, but what it saw was not recorded
            self.checkers.feed(Op(
                process=process, f=f, key=None if _absent(keys[j]) else str(keys[j]),
                value=value, seen=seen, outcome=outcome,
                t_start=float(chunk.t_start[i]), t_end=float(chunk.t_end[i]),
                replica=chunk.host_names[host] if host >= 0 else None, status=status,
                index=self.index))
            self.index += 1

    def result(self) -> dict:
        return self.checkers.result()


def _validate(f: str, value: object, where: str) -> None:
    """One line on what the checkers cannot read (``loadtest.ops.operation`` refuses the
    same at the source)."""
    if f not in ALL_FS:
        raise InputError(f"{where}: unknown operation {f!r} (one of {', '.join(ALL_FS)})")
    if f == "cas" and not (isinstance(value, list) and len(value) == 2):
        raise InputError(f"{where}: a cas takes [expected, new] as its value, not "
                         f"{_short(value)}")
    if f == "incr" and (isinstance(value, bool) or not isinstance(value, int)):
        raise InputError(f"{where}: an incr takes an integer to add, not {_short(value)}")


def _count(seen: object) -> bool:
    """A counter's reading: an integer, null (never written), or nothing recorded."""
    return seen is None or seen is _MISSING or (isinstance(seen, int)
                                                 and not isinstance(seen, bool))


def _short(value: object) -> str:
    text = orjson.dumps(value, default=str).decode()
    return text if len(text) <= 60 else text[:59] + "…"


def _absent(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _load(text, missing=None):
    if _absent(text):
        return missing
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
