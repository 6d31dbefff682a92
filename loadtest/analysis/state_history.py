"""The run's operations on the app's state (``loadtest.ops``), read from the records and
fed in time order to the state checkers, as the records stream by.

A record's operation becomes an ``Op``: its process is the user that sent it (worker /
user, whose requests are sequential), its replica the one that answered, and its outcome
follows the counter's rules: the balancer's own answer or a refused connection surely
never reached the app (``fail``); an answer below 500 is definite (``ok``, a 401 too: the
login checker judges it); no answer or a 5xx may or may not have taken effect
(``unknown``).
"""

from __future__ import annotations

import orjson

from loadtest.analysis.history import FAIL, OK, UNKNOWN, Op
from loadtest.analysis.passes import Accumulator, Chunk
from loadtest.analysis.state_checks import StateCheckers
from loadtest.analysis.thresholds import Thresholds


class StateHistory(Accumulator):
    def __init__(self, t: Thresholds, margin: float = 0.0) -> None:
        self.checkers = StateCheckers(max_states=t.linearizable_max_states,
                                      budget_s=t.linearizable_budget_s, margin=margin)
        self.index = 0

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
        for j, i in enumerate(rows.tolist()):
            status = int(chunk.status[i])
            outcome = FAIL if chunk.fail[i] else OK if 0 < status < 500 else UNKNOWN
            host = chunk.host_codes[i]
            self.checkers.feed(Op(
                process=f"{chunk.worker_names[chunk.worker_codes[i]]}/{chunk.user[i]}",
                f=str(fs[j]), key=None if keys[j] is None else str(keys[j]),
                value=_load(values[j]), seen=_load(seens[j]), outcome=outcome,
                t_start=float(chunk.t_start[i]), t_end=float(chunk.t_end[i]),
                replica=chunk.host_names[host] if host >= 0 else None, status=status,
                index=self.index))
            self.index += 1

    def result(self) -> dict:
        return self.checkers.result()


def _load(text):
    if text is None or (isinstance(text, float) and text != text):
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
