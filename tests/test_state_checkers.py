"""The shared-state checkers on hand-made histories with known answers, and the
linearizability search against a brute-force checker on small random histories.

Pure functions over plain operations: nothing is started here."""

from __future__ import annotations

import re
from itertools import combinations, permutations
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadtest.analysis import linearizable
from loadtest.analysis.addcounter import check_counters
from loadtest.analysis.history import Op, freeze
from loadtest.analysis.linearizable import check_register
from loadtest.analysis.listcheck import check_lists
from loadtest.analysis.outcomes import OutcomeError, operation_outcome
from loadtest.analysis.sessions import check_login_sessions, check_session_guarantees
from loadtest.analysis.setcheck import check_sets
from loadtest.analysis.state_checks import state_checks, state_findings
from loadtest.analysis.thresholds import Thresholds

T0 = 1_700_000_000.0  # epoch seconds, as records carry them


def op(process, f, a, b, value=None, seen=None, outcome="ok", key="k", replica="hello-1",
       status=200):
    return Op(process, f, key, value, seen, outcome, T0 + a, T0 + b, replica,
              status if outcome != "unknown" else 0)


def w(process, value, a, b, **kw):
    return op(process, "write", a, b, value=value, **kw)


def r(process, seen, a, b, **kw):
    return op(process, "read", a, b, seen=seen, **kw)


def history(*ops):
    out = sorted(ops, key=lambda o: o.t_start)
    return [Op(o.process, o.f, o.key, o.value, o.seen, o.outcome, o.t_start, o.t_end,
               o.replica, o.status, i) for i, o in enumerate(out)]


# -- linearizability: hand-made histories ----------------------------------------------

def test_sequential_history_is_linearizable():
    h = history(w("a", 1, 0, 1), r("b", 1, 2, 3), w("a", 2, 4, 5), r("b", 2, 6, 7))
    result = check_register(h)
    assert result["valid"] is True
    assert result["keys_valid"] == 1 and result["ok"] == 4


def test_concurrent_writes_then_a_read_of_either():
    for seen in (1, 2):
        h = history(w("a", 1, 0, 3), w("b", 2, 1, 4), r("c", seen, 5, 6))
        assert check_register(h)["valid"] is True, seen
    h = history(w("a", 1, 0, 3), w("b", 2, 1, 4), r("c", 3, 5, 6))
    assert check_register(h)["valid"] is False


def test_a_read_concurrent_with_two_writes_may_see_either_or_the_old_value():
    for seen in (None, 1, 2):
        h = history(w("a", 1, 0, 4), w("b", 2, 1, 5), r("c", seen, 2, 3))
        assert check_register(h)["valid"] is True, seen


def test_reads_must_agree_on_the_order_of_concurrent_writes():
    # b's write of 2 is still in flight when c reads 1 and d reads 2: it took effect
    # between them, and then 1 cannot come back.
    h = history(w("a", 1, 0, 3), w("b", 2, 1, 20), r("c", 1, 5, 6), r("d", 2, 7, 8),
                r("e", 1, 9, 10, replica="hello-3"))
    result = check_register(h)
    assert result["valid"] is False
    bad = result["violations"][0]
    assert bad["op"]["process"] == "e" and bad["replica"] == "hello-3"
    assert bad["could_hold"] == [2]


def test_only_a_chain_of_three_operations_is_not_linearizable():
    """A long write of 1; b reads 1; then c reads the initial value. No write ended before
    c began (no write-then-read pair shows it stale), and without b's read or c's the
    history is linearizable: only the chain a -> b -> c shows the violation."""
    ops = [w("a", 1, 0, 10), r("b", 1, 1, 2), r("c", None, 3, 4, replica="hello-2")]
    assert not any(o.f == "write" and o.t_end < ops[2].t_start for o in ops)
    for dropped in (1, 2):
        rest = [o for i, o in enumerate(ops) if i != dropped]
        assert check_register(history(*rest))["valid"] is True, dropped
    result = check_register(history(*ops))
    assert result["valid"] is False
    bad = result["violations"][0]
    assert bad["op"]["process"] == "c" and bad["replica"] == "hello-2"
    shown = {o["process"] for o in bad["ops"]}
    assert shown == {"a", "b", "c"}, "the window names the whole chain"
    assert "c read null from k on hello-2 at 3.000–4.000 s (HTTP 200)" in bad["message"]
    assert "could only hold 1" in bad["message"]


def test_stale_read_from_a_per_replica_cache():
    h = history(w("a", "v1", 0, 1), r("b", "v1", 2, 3, replica="hello-2"),
                w("a", "v2", 4, 5), r("b", "v1", 6, 7, replica="hello-2"),
                r("c", "v2", 8, 9, replica="hello-1"))
    result = check_register(h)
    assert result["valid"] is False
    bad = result["violations"][0]
    assert bad["key"] == "k" and bad["replica"] == "hello-2" and bad["t"] == 7.0
    assert bad["could_hold"] == ["v2"]
    texts = [o["text"] for o in bad["ops"]]
    assert 'a wrote "v2" to k on hello-1 at 4.000–5.000 s (HTTP 200)' in texts


def test_unknown_writes_may_apply_late_or_never():
    never = history(w("a", 1, 0, 2, outcome="unknown"), r("b", None, 3, 4),
                    r("b", None, 5, 6))
    assert check_register(never)["valid"] is True
    late = history(w("a", 1, 0, 2, outcome="unknown"), r("b", None, 3, 4), r("b", 1, 9, 10),
                   r("c", 1, 11, 12))
    assert check_register(late)["valid"] is True
    # Once seen, it took effect: it cannot be undone.
    undone = history(w("a", 1, 0, 2, outcome="unknown"), r("b", 1, 3, 4), r("b", None, 5, 6))
    assert check_register(undone)["valid"] is False
    # An unknown write cannot take effect before it started.
    early = history(r("b", 1, 0, 1), w("a", 1, 2, 3, outcome="unknown"))
    assert check_register(early)["valid"] is False
    # The same within one segment (a long write keeps the key busy throughout).
    early = history(w("x", 5, 0, 20), r("b", 1, 1, 2), w("a", 1, 3, 4, outcome="unknown"))
    assert check_register(early)["valid"] is False


def test_operations_still_pending_at_the_end():
    # The last write never answered: the final reads may see it, or the previous value.
    for seen in (1, 2):
        h = history(w("a", 1, 0, 1), w("b", 2, 2, 30, outcome="unknown"), r("c", seen, 3, 4),
                    r("c", seen, 5, 6))
        assert check_register(h)["valid"] is True
    h = history(w("a", 1, 0, 1), w("b", 2, 2, 30, outcome="unknown"), r("c", 2, 3, 4),
                r("c", 1, 5, 6))
    assert check_register(h)["valid"] is False


def test_a_write_of_the_value_already_held():
    # Found by the brute-force comparison: the writes of None must go before the cas.
    h = history(op("p0", "cas", 0, 0, value=(None, 0)), w("p1", None, 0, 0),
                w("p2", None, 0, 0), r("p3", 0, 1, 1))
    assert check_register(h)["valid"] is True


def test_failed_operations_are_dropped():
    h = history(w("a", 1, 0, 1), w("b", 2, 2, 3, outcome="fail"), r("c", 1, 4, 5))
    result = check_register(h)
    assert result["valid"] is True and result["fail"] == 1
    h = history(w("a", 1, 0, 1), w("b", 2, 2, 3, outcome="fail"), r("c", 2, 4, 5))
    assert check_register(h)["valid"] is False


def test_compare_and_set():
    h = history(w("a", 0, 0, 1), op("b", "cas", 2, 3, value=[0, 1]),
                op("c", "cas", 2, 4, value=[1, 2]), r("d", 2, 5, 6))
    assert check_register(h)["valid"] is True
    h = history(w("a", 0, 0, 1), op("b", "cas", 2, 3, value=[5, 1]), r("d", 1, 5, 6))
    assert check_register(h)["valid"] is False


def test_keys_are_checked_apart():
    h = history(w("a", 1, 0, 1, key="x"), w("a", 1, 0, 1, key="y"),
                r("b", 1, 2, 3, key="x"), r("b", None, 2, 3, key="y"))
    result = check_register(h)
    assert result["valid"] is False and result["keys"] == 2
    assert result["keys_invalid"] == 1 and result["violations"][0]["key"] == "y"


def test_initial_value_is_configurable():
    h = history(r("a", 0, 0, 1), w("b", 1, 2, 3), r("a", 1, 4, 5))
    assert check_register(h)["valid"] is False
    assert check_register(h, initial=0)["valid"] is True


def test_margin_forgives_clock_disagreement_between_processes_only():
    # b's read began 5 ms after a's write ended, on another machine's clock.
    h = history(w("a", 1, 0, 1), w("a", 2, 1.1, 2.0), r("b", 1, 2.005, 2.1))
    assert check_register(h)["valid"] is False
    assert check_register(h, margin=0.010)["valid"] is True
    # A process's own operations keep their order, whatever the margin.
    own = history(w("a", 1, 0, 1), w("a", 2, 1.001, 2.0), r("a", 1, 2.002, 2.1))
    assert check_register(own, margin=0.010)["valid"] is False


def test_a_search_that_hits_its_bound_is_not_checked():
    # Twelve concurrent writes, reads of each, and a read of a value never written: every
    # order of the writes must be tried before the search can say no.
    ops = [w(f"p{i}", i, 0, 10 + i) for i in range(12)] + \
        [r(f"q{i}", i, 1, 19) for i in range(12)] + [r("q", 99, 1, 30)]
    result = check_register(history(*ops), max_states=50)
    assert result["valid"] is None
    assert result["keys_not_checked"] == 1
    assert "50 configurations" in result["not_checked"][0]["reason"]
    assert "not checked" in result["reason"] or "key(s) not checked" in result["reason"]
    timed = check_register(history(*ops), budget_s=0.0)
    assert timed["valid"] is None and "time budget" in timed["not_checked"][0]["reason"]
    # A smaller one of the same kind, within the bounds: a definite answer.
    ops = [w(f"p{i}", i, 0, 10 + i) for i in range(6)] + \
        [r(f"q{i}", i, 1, 19) for i in range(6)] + [r("q", 99, 1, 30)]
    assert check_register(history(*ops), max_states=50_000)["valid"] is False


def test_no_register_operations_is_not_checked():
    assert check_register([])["valid"] is None
    only_unknown = history(w("a", 1, 0, 1, outcome="unknown"))
    assert check_register(only_unknown)["valid"] is None


def test_unsorted_history_is_refused():
    h = [w("a", 1, 5, 6), w("b", 2, 0, 1)]
    with pytest.raises(ValueError, match="sorted by t_start"):
        check_register(h)


def test_long_history_without_a_quiescent_point_is_cut_and_carried(monkeypatch):
    """Two clients always overlapping on one key: the history is cut every few ops and
    configurations carried across the cuts; a stale read late in it is still found."""
    ops, value = [], 0
    for i in range(400):
        a = i * 1.0
        value += 1
        ops.append(w("a", value, a, a + 1.5))       # overlaps the next one
        ops.append(r("b", value, a + 1.6, a + 1.7) if i != 377 else r("b", value - 5,
                                                                           a + 1.6, a + 1.7))
    result = check_register(history(*ops))
    assert result["valid"] is False
    assert result["violations"][0]["op"]["t_start"] == pytest.approx(377 + 1.6)
    monkeypatch.setattr(linearizable, "SEGMENT_OPS", 3)
    again = check_register(history(*ops))
    assert again["valid"] is False
    assert again["violations"][0]["op"]["t_start"] == pytest.approx(377 + 1.6)


# -- outcomes as HTTP means them, and compare-and-set -----------------------------------

@pytest.mark.parametrize("f,status,never,declared,expected", [
    ("write", 200, False, None, ("ok", None)),
    ("write", 201, False, None, ("ok", None)),
    ("write", 409, False, None, ("fail", None)),     # the app refused it: no effect
    ("write", 422, False, None, ("fail", None)),
    ("write", 500, False, None, ("unknown", None)),  # it may have written
    ("write", 0, False, None, ("unknown", None)),    # no answer
    ("write", 503, True, None, ("fail", None)),      # the balancer's own: never reached it
    ("cas", 200, False, None, ("ok", True)),         # swapped
    ("cas", 409, False, None, ("ok", False)),        # compared and failed
    ("cas", 412, False, None, ("ok", False)),
    ("cas", 400, False, None, ("fail", None)),
    ("cas", 504, False, None, ("unknown", None)),
    ("read", 404, False, "ok", ("ok", None)),        # declared: an absent key
    ("write", 422, False, "unknown", ("unknown", None)),
    ("write", 200, False, "fail", ("fail", None)),
    ("cas", 200, False, "compare-failed", ("ok", False)),
    ("cas", 409, False, "swapped", ("ok", True)),
])
def test_operation_outcome_reads_http(f, status, never, declared, expected):
    assert operation_outcome(f, status, never, declared) == expected


def test_a_declared_outcome_that_is_none_is_refused_in_words():
    with pytest.raises(OutcomeError, match="'done' is not one of ok, fail"):
        operation_outcome("write", 200, False, "done")
    with pytest.raises(OutcomeError, match="a cas's, not a write's"):
        operation_outcome("write", 200, False, "compare-failed")


def test_the_scenario_s_mistakes_are_refused_where_they_are_written():
    from loadtest.ops import operation, outcome

    assert operation("cas", "k", ("a", "b")) == {"op": "cas", "key": "k", "value": ["a", "b"]}
    for args, message in ((("wrte", "k", 1), "unknown operation 'wrte'"),
                          (("cas", "k", "b"), "cas takes [expected, new]"),
                          (("incr", "k", 1.5), "incr takes an integer")):
        with pytest.raises(ValueError, match=re.escape(message)):
            operation(*args)

    class Response:
        request_meta = {"context": operation("write", "k", 1)}

    with pytest.raises(ValueError, match="'compare-failed' is a cas's"):
        outcome(Response(), "compare-failed")
    with pytest.raises(ValueError, match="unknown outcome 'maybe'"):
        outcome(Response(), "maybe")
    outcome(Response(), "unknown")
    assert Response.request_meta["context"]["outcome"] == "unknown"


def test_a_rejected_write_has_no_effect():
    """A 409 to a write (the app refused a conflicting write, as Kinto does) wrote
    nothing: read as such, the history is linearizable."""
    h = history(w("a", "v1", 0, 1), w("b", "v2", 0.5, 1.5, outcome="fail", status=409),
                r("c", "v1", 2, 3))
    assert check_register(h)["valid"] is True
    taken = history(w("a", "v1", 0, 1), w("b", "v2", 0.5, 1.5, status=409),
                    r("c", "v1", 2, 3))  # the same 409 counted as applied: a false alarm
    assert check_register(taken)["valid"] is True  # v2 may precede v1: overlapping
    late = history(w("a", "v1", 0, 1), w("b", "v2", 1.5, 1.8, outcome="fail", status=409),
                   r("c", "v1", 2, 3))
    assert check_register(late)["valid"] is True
    applied = history(w("a", "v1", 0, 1), w("b", "v2", 1.5, 1.8, status=409),
                      r("c", "v1", 2, 3))
    assert check_register(applied)["valid"] is False


def cas(process, old, new, a, b, swapped=True, **kw):
    status = kw.pop("status", 200 if swapped else 412)
    return op(process, "cas", a, b, value=[old, new], seen=swapped, status=status, **kw)


def test_a_failed_compare_sees_another_value_and_changes_nothing():
    h = history(w("a", 1, 0, 1), cas("b", 2, 3, 2, 3, swapped=False), r("c", 1, 4, 5))
    assert check_register(h)["valid"] is True
    # The same answer while the key surely held 2: no order explains it.
    h = history(w("a", 2, 0, 1), cas("b", 2, 3, 2, 3, swapped=False, replica="hello-3"),
                r("c", 2, 4, 5))
    result = check_register(h)
    assert result["valid"] is False
    bad = result["violations"][0]
    assert bad["op"]["f"] == "cas" and bad["replica"] == "hello-3"
    assert "compare failed" in bad["message"] and "(HTTP 412)" in bad["message"]
    assert "could only hold the 2 it expected" in bad["message"]
    # A concurrent write of another value explains it.
    h = history(w("a", 2, 0, 1), w("d", 5, 1.5, 2.5), cas("b", 2, 3, 2, 3, swapped=False),
                r("c", 2, 4, 5))
    assert check_register(h)["valid"] is False  # 5 then 2 again: no write of 2 after 5
    h = history(w("a", 2, 0, 1), w("d", 5, 1.5, 2.5), cas("b", 2, 3, 2, 3, swapped=False),
                r("c", 5, 4, 5))
    assert check_register(h)["valid"] is True
    # Counted as a swap (the old reading of any answer below 500), it would not be.
    h = history(w("a", 1, 0, 1), cas("b", 2, 3, 2, 3), r("c", 1, 4, 5))
    assert check_register(h)["valid"] is False


ETCD = Path(__file__).parent / "data" / "porcupine-etcd"
_JEPSEN = re.compile(r"^INFO\s+jepsen\.util\s+-\s+(\d+)\s+:(invoke|ok|fail|info)\s+"
                     r":(read|write|cas)\s+(.*)$")


def jepsen_log(text: str, failed_cas: str = "compare-failed") -> list[Op]:
    """A Jepsen etcd log as a history: a line's index is its time; ``:info`` (a timeout)
    and an invocation never completed are unknown; a ``:fail :read`` saw nothing; a
    ``:fail :cas`` compared and failed (or, ``failed_cas="swapped"``, is taken as a swap,
    as any answer was before compare-and-set had three outcomes)."""
    pending, ops = {}, []
    for i, line in enumerate(text.splitlines()):
        m = _JEPSEN.match(line.strip())
        if not m:
            continue
        process, kind, f, arg = m.groups()
        if kind == "invoke":
            value = int(arg) if f == "write" else [int(x) for x in arg.strip("[]").split()] \
                if f == "cas" else None
            pending[process] = (f, value, float(i))
            continue
        f, value, start = pending.pop(process)
        unknown = kind == "info" or (kind == "fail" and f == "read")
        seen = None if unknown else (None if arg == "nil" else int(arg)) if f == "read" else \
            (kind == "ok" or failed_cas == "swapped") if f == "cas" else None
        ops.append(op(f"p{process}", f, start, start if unknown else float(i), value=value,
                      seen=seen, outcome="unknown" if unknown else "ok"))
    ops += [op(f"p{p}", f, start, start, value=value, outcome="unknown")
            for p, (f, value, start) in pending.items()]
    return history(*ops)  # an unknown operation may apply at any time after its start


@pytest.mark.parametrize("name,linearizable", [
    ("etcd_002", True), ("etcd_005", True), ("etcd_007", True), ("etcd_000", False)])
def test_porcupine_etcd_logs_read_as_porcupine_reads_them(name, linearizable):
    """Jepsen's etcd logs from Porcupine's tests (tests/data/porcupine-etcd), their failed
    compare-and-sets recorded as *compare failed*: the same verdict as Porcupine's."""
    ops = jepsen_log((ETCD / f"{name}.log").read_text())
    assert len(ops) > 60 and sum(1 for o in ops if o.f == "cas" and o.seen is False) > 5
    assert check_register(ops)["valid"] is linearizable
    if linearizable:  # a failed cas taken as a swap: every one reads as a violation
        swapped = jepsen_log((ETCD / f"{name}.log").read_text(), failed_cas="swapped")
        assert check_register(swapped)["valid"] is False


# -- linearizability against brute force ------------------------------------------------

def brute_force(ops, initial=None) -> bool:
    """Every order of the ok operations plus any subset of the unknown ones that respects
    real time, replayed on a register: is one of them legal?"""
    keys = {o.key for o in ops}
    return all(_brute_key([o for o in ops if o.key == k], freeze(initial)) for k in keys)


def _brute_key(ops, initial) -> bool:
    must = [o for o in ops if o.outcome == "ok"]
    may = [o for o in ops if o.outcome == "unknown" and o.f != "read"]
    for n in range(len(may) + 1):
        for extra in combinations(may, n):
            for order in permutations(must + list(extra)):
                if _legal(order, initial):
                    return True
    return False


def _legal(order, state) -> bool:
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            if b.outcome == "ok" and b.t_end < a.t_start:
                return False  # b ended before a began, yet comes after it
    for o in order:
        if o.f == "write":
            state = freeze(o.value)
        elif o.f == "read":
            if freeze(o.seen) != state:
                return False
        elif o.seen is False and o.outcome == "ok":  # compared and failed: no effect
            if state == freeze(o.value[0]):
                return False
        else:
            old, new = o.value
            if state != old:
                return False
            state = new
    return True


VALUES = st.sampled_from([None, 0, 1, 2])


@st.composite
def small_histories(draw, max_ops=7):
    n = draw(st.integers(1, max_ops))
    ops = []
    for i in range(n):
        f = draw(st.sampled_from(["write", "write", "read", "read", "read", "cas"]))
        a = draw(st.integers(0, 14))
        b = a + draw(st.integers(0, 5))
        outcome = draw(st.sampled_from(["ok"] * 6 + ["unknown", "fail"]))
        value = seen = None
        if f == "write":
            value = draw(VALUES)
        elif f == "read":
            seen = draw(VALUES)
        else:
            value = (draw(VALUES), draw(VALUES))
            seen = draw(st.sampled_from([True, True, False]))  # False: the compare failed
        key = draw(st.sampled_from(["k", "k", "j"]))
        ops.append(op(f"p{i}", f, a, b, value=value, seen=seen, outcome=outcome, key=key))
    return history(*ops)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_histories())
@pytest.mark.slow  # thousands of random histories through both searches
def test_search_agrees_with_brute_force(h):
    expected = brute_force(h)
    assert check_register(h)["valid"] is (expected if any(o.outcome == "ok" for o in h)
                                          else None)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_histories(max_ops=7), st.integers(1, 3))
def test_cuts_without_quiescence_agree_with_brute_force(h, every):
    """Cutting every one to three operations, open ones carried across: same answer."""
    expected = brute_force(h)
    old = linearizable.SEGMENT_OPS
    linearizable.SEGMENT_OPS = every
    try:
        got = check_register(h)["valid"]
    finally:
        linearizable.SEGMENT_OPS = old
    assert got is (expected if any(o.outcome == "ok" for o in h) else None)


# -- sets -------------------------------------------------------------------------------

def add(process, element, a, b, **kw):
    return op(process, "add", a, b, value=element, key="s", **kw)


def read_all(process, items, a, b, **kw):
    return op(process, "read-all", a, b, seen=items, key="s", **kw)


def test_set_clean_history():
    h = history(add("a", 1, 0, 1), add("b", 2, 0.5, 1.5), read_all("c", [1, 2], 2, 3),
                add("a", 3, 4, 5, outcome="unknown"), read_all("c", [1, 2], 6, 7),
                read_all("c", [1, 2, 3], 8, 9))
    result = check_sets(h)
    assert result["valid"] is True
    assert result["lost"] == result["stale_reads"] == result["unexpected"] == 0
    assert result["outcomes"]["stable"] == 3


def test_a_lost_add():
    h = history(add("a", 1, 0, 1), add("b", 2, 0, 1), read_all("c", [1, 2], 2, 3),
                read_all("c", [1], 4, 5, replica="hello-2"),
                read_all("d", [1], 6, 7, replica="hello-1"))
    result = check_sets(h)
    assert result["valid"] is False and result["lost"] == 1
    lost = result["lost_examples"][0]
    assert lost["element"] == 2 and lost["replica"] == "hello-2" and lost["missing_from"] == 2
    assert "b added it on hello-1" in lost["message"]
    assert result["stale_reads"] == 0


def test_an_acknowledged_add_never_read_back_is_lost():
    h = history(add("a", 1, 0, 1), read_all("c", [], 2, 3, replica="hello-2"))
    result = check_sets(h)
    assert result["lost"] == 1 and result["lost_examples"][0]["replica"] == "hello-2"


def test_stale_reads_from_a_per_replica_cache():
    h = history(add("a", 1, 0, 1), read_all("b", [1], 2, 3, replica="hello-1"),
                add("a", 2, 4, 5), read_all("b", [1], 6, 7, replica="hello-2"),
                read_all("c", [1], 6.5, 7.5, replica="hello-2"),
                read_all("b", [1, 2], 8, 9, replica="hello-1"))
    result = check_sets(h)
    assert result["valid"] is False
    assert result["stale_reads"] == 2 and result["lost"] == 0
    assert result["stale_by_replica"] == {"hello-2": 2}
    example = result["stale_examples"][0]
    assert example["element"] == 2 and example["replica"] == "hello-2"
    # Missing an element only seen by a read that had not ended yet is not stale.
    h = history(add("a", 1, 0, 10, outcome="unknown"), read_all("b", [1], 2, 6),
                read_all("c", [], 3, 4), read_all("c", [1], 7, 8))
    assert check_sets(h)["stale_reads"] == 0


def test_unexpected_and_duplicated_elements():
    h = history(add("a", 1, 0, 1), add("a", 9, 0.5, 0.8, outcome="fail"),
                read_all("b", [1, 1, 7, 9], 2, 3, replica="hello-3"))
    result = check_sets(h)
    assert result["valid"] is False
    assert result["unexpected"] == 2 and result["duplicates"] == 1
    assert {e["element"] for e in result["unexpected_examples"]} == {7, 9}
    assert result["duplicate_examples"][0]["replica"] == "hello-3"
    # Added twice: read twice is fine (a list).
    h = history(add("a", 1, 0, 1), add("b", 1, 0, 1), read_all("c", [1, 1], 2, 3))
    assert check_sets(h)["valid"] is True


def test_sets_without_reads_are_not_checked():
    assert check_sets(history(add("a", 1, 0, 1)))["valid"] is None
    assert check_sets([])["valid"] is None


def test_set_lost_and_stale_with_no_read_after_a_confirmed_add_are_not_checked():
    """Every read began before any add was acknowledged: nothing could be lost or stale
    yet. The checks say not checked, not pass; unexpected elements are still judged."""
    h = history(add("a", 1, 0, 5), add("b", 2, 1, 6), read_all("c", [], 0.5, 1),
                read_all("c", [1], 2, 3))
    result = check_sets(h)
    assert result["valid"] is None and result["judged_after_known"] == 0
    status = {c.name: (c.status, c.reason) for c in state_checks(state_findings(h),
                                                                  Thresholds())}
    assert status["set_lost"][0] == status["set_stale"][0] == "not checked"
    assert "no read began after an element was known" in status["set_lost"][1]
    assert status["set_unexpected"][0] == "pass"
    # One read after the first add's end: judged, and passes.
    h = history(add("a", 1, 0, 1), read_all("c", [1], 2, 3))
    status = {c.name: c.status for c in state_checks(state_findings(h), Thresholds())}
    assert status["set_lost"] == status["set_stale"] == "pass"


def test_set_stale_counts_reads_and_its_replicas_add_up():
    """Two reads on hello-2 each miss three known elements that come back later: 2 stale
    reads (6 misses), and the per-replica count says 2, not 6."""
    h = history(add("a", 1, 0, 1), add("a", 2, 0, 1), add("a", 3, 0, 1),
                read_all("b", [], 2, 3, replica="hello-2"),
                read_all("c", [], 2.5, 3.5, replica="hello-2"),
                read_all("b", [1, 2, 3], 4, 5, replica="hello-1"))
    result = check_sets(h)
    assert result["stale_reads"] == 2 and result["stale_misses"] == 6
    assert result["stale_by_replica"] == {"hello-2": 2}
    check = next(c for c in state_checks(state_findings(h), Thresholds())
                 if c.name == "set_stale")
    assert check.value == sum(check.evidence["by_replica"].values()) == 2
    assert check.evidence["misses"] == 6 and "each stale read once" in check.evidence["counted"]


# -- counters (add n, read) -----------------------------------------------------------

def incr(process, n, a, b, **kw):
    return op(process, "incr", a, b, value=n, key="c", **kw)


def read_counter(process, seen, a, b, **kw):
    return op(process, "read-counter", a, b, seen=seen, key="c", **kw)


def test_counter_reads_within_their_bounds():
    h = history(incr("a", 2, 0, 1), incr("b", 3, 0.5, 3), read_counter("c", 2, 1.5, 2),
                read_counter("c", 5, 2.5, 3.5), incr("a", -1, 4, 5, outcome="unknown"),
                read_counter("c", 4, 6, 7), read_counter("d", 5, 6, 7),
                incr("b", 10, 8, 9, outcome="fail", status=409), read_counter("c", 5, 10, 11))
    result = check_counters(h)
    assert result["lost"]["valid"] is True and result["extra"]["valid"] is True
    assert result["extra"]["judged"] == 5 and result["lost"]["judged"] == 5


def test_a_lost_add_and_a_counted_twice_add_are_caught():
    """A read-modify-write that lost an add: a read below the acknowledged sum. A retried
    add applied twice: a read above every add begun."""
    h = history(incr("a", 1, 0, 1), incr("b", 1, 0.2, 1.2), incr("c", 1, 0.4, 1.4),
                read_counter("d", 2, 2, 3, replica="hello-2"))
    lost = check_counters(h)["lost"]
    assert lost["valid"] is False and lost["violations"] == 1
    example = lost["examples"][0]
    assert example["replica"] == "hello-2" and example["low"] == 3 and example["seen"] == 2
    assert "below 3, what the adds acknowledged before it began make" in example["message"]
    h = history(incr("a", 5, 0, 1), incr("b", 5, 0.5, 1.5, outcome="unknown"),
                read_counter("d", 15, 2, 3, replica="hello-3"), read_counter("e", 10, 2, 3))
    result = check_counters(h)
    assert result["extra"]["violations"] == 1 and result["extra"]["by_replica"] == {
        "hello-3": 1}
    assert result["extra"]["examples"][0]["high"] == 10
    assert result["lost"]["valid"] is True


def test_a_concurrent_add_may_or_may_not_be_counted():
    h = history(incr("a", 4, 0, 10), read_counter("b", 0, 1, 2), read_counter("b", 4, 3, 4),
                read_counter("c", 0, 3.5, 5))
    assert check_counters(h)["lost"]["valid"] is None  # nothing acknowledged before a read
    assert check_counters(h)["extra"]["valid"] is True


def test_counters_with_nothing_to_judge_are_not_checked():
    result = check_counters(history(incr("a", 1, 0, 1)))
    assert result["lost"]["valid"] is None and result["extra"]["valid"] is None
    assert check_counters([])["extra"]["reason"] == "no counter operations"
    h = history(read_counter("b", 0, 0, 1), incr("a", 1, 2, 3))
    result = check_counters(h)
    assert result["lost"]["valid"] is None and "nothing it could" in result["lost"]["reason"]
    assert result["extra"]["valid"] is True


# -- lists (append, read) -------------------------------------------------------------

def append(process, element, a, b, **kw):
    return op(process, "append", a, b, value=element, key="l", **kw)


def read_list(process, items, a, b, **kw):
    return op(process, "read-list", a, b, seen=items, key="l", **kw)


def test_list_clean_history():
    h = history(append("a", "x", 0, 1), append("b", "y", 0.5, 2), read_list("c", ["x"], 1.5, 1.8),
                read_list("c", ["x", "y"], 3, 4), append("a", "z", 5, 6, outcome="unknown"),
                read_list("d", ["x", "y"], 7, 8), read_list("c", ["x", "y", "z"], 9, 10))
    result = check_lists(h)
    for name in ("lost", "stale", "duplicated", "reordered"):
        assert result[name]["valid"] is True, (name, result[name])
    assert result["reordered"]["judged"] == 3


def test_list_anomalies_each_named():
    # Two read-modify-writes raced: y replaced x (x lost; the reads disagree after "a").
    h = history(append("p", "a", 0, 1), append("p", "x", 2, 3), read_list("q", ["a", "x"], 4, 5),
                append("r", "y", 4.5, 5.5),
                read_list("q", ["a", "y"], 6, 7, replica="hello-2"),
                read_list("s", ["a", "y"], 8, 9, replica="hello-3"))
    result = check_lists(h)
    assert result["lost"]["violations"] == 1
    assert result["lost"]["examples"][0]["element"] == "x"
    assert result["reordered"]["violations"] == 2
    assert result["reordered"]["by_replica"] == {"hello-2": 1, "hello-3": 1}
    assert '"y" after "a", where it had "x"' in result["reordered"]["examples"][0]["message"]
    # Two elements in the other order.
    h = history(append("p", "a", 0, 1), append("p", "b", 1, 2),
                read_list("q", ["a", "b"], 3, 4), read_list("q", ["b", "a"], 5, 6))
    reordered = check_lists(h)["reordered"]
    assert reordered["violations"] == 1
    assert "two elements in the other order" in reordered["examples"][0]["message"]
    # A retried append applied twice; an element never appended.
    h = history(append("p", "a", 0, 1), read_list("q", ["a", "a", "zz"], 2, 3,
                                                  replica="hello-4"))
    dup = check_lists(h)["duplicated"]
    assert dup["violations"] == 2 and dup["duplicates"] == 1 and dup["never_appended"] == 1
    # A stale read: it missed "b", known since 2 s, which a later read had again.
    h = history(append("p", "a", 0, 1), append("p", "b", 1, 2), read_list("q", ["a"], 3, 4,
                                                                         replica="hello-5"),
                read_list("q", ["a", "b"], 5, 6))
    result = check_lists(h)
    assert result["stale"]["violations"] == 1 and result["stale"]["by_replica"] == {
        "hello-5": 1}
    assert result["reordered"]["violations"] == 0 and result["lost"]["violations"] == 0


def test_lists_with_nothing_to_judge_are_not_checked():
    h = history(append("a", "x", 0, 5), read_list("b", [], 1, 2), read_list("b", ["x"], 3, 4))
    result = check_lists(h)
    assert result["lost"]["valid"] is None and result["stale"]["valid"] is None
    assert result["reordered"]["valid"] is None  # one read returned anything
    assert result["duplicated"]["valid"] is True
    assert check_lists([])["lost"]["reason"] == "no list operations"


# -- session guarantees ----------------------------------------------------------------

def test_session_guarantees_hold_on_a_linearizable_history():
    h = history(w("a", "a1", 0, 1), r("a", "a1", 2, 3), r("b", "a1", 2, 3),
                w("b", "b1", 4, 5), r("a", "b1", 6, 7), w("a", "a2", 8, 9),
                r("b", "a2", 10, 11), r("a", "a2", 10, 11))
    result = check_session_guarantees(h)
    for name in ("read_your_writes", "monotonic_reads", "monotonic_writes",
                 "writes_follow_reads"):
        assert result[name]["valid"] is True, (name, result[name])
        assert result[name]["judged"] > 0, name


def test_read_your_writes_and_monotonic_reads_broken_by_a_cache():
    h = history(w("a", "v1", 0, 1), r("a", "v1", 2, 3, replica="hello-2"),
                w("a", "v2", 4, 5, replica="hello-1"),
                r("a", "v1", 6, 7, replica="hello-2"))
    result = check_session_guarantees(h)
    ryw = result["read_your_writes"]
    assert ryw["valid"] is False and ryw["by_replica"] == {"hello-2": 1}
    assert "older than its own write before" in ryw["examples"][0]["message"]
    assert result["monotonic_reads"]["valid"] is True  # v1, then v1 again: not older
    h = history(w("a", "v1", 0, 1), w("a", "v2", 2, 3), r("b", "v2", 4, 5),
                r("b", "v1", 6, 7, replica="hello-2"))
    mr = check_session_guarantees(h)["monotonic_reads"]
    assert mr["valid"] is False and mr["examples"][0]["replica"] == "hello-2"


def test_monotonic_writes_seen_out_of_order():
    # a's two writes overlap b's reads in time, but b sees the later one first.
    h = history(w("a", "a1", 0, 5), w("a", "a2", 6, 9), r("b", "a2", 7, 10),
                r("b", "a1", 11, 12, replica="hello-2"))
    mw = check_session_guarantees(h)["monotonic_writes"]
    assert mw["valid"] is False and mw["examples"][0]["replica"] == "hello-2"
    assert "written by a before a write of its" in mw["examples"][0]["message"]


def test_writes_follow_reads():
    # b reads x (x's write still in flight), then writes y; c reads y then x.
    h = history(w("a", "x", 0, 10), r("b", "x", 1, 2), w("b", "y", 3, 4),
                r("c", "y", 5, 6), r("c", "x", 7, 8, replica="hello-2"))
    result = check_session_guarantees(h)
    wfr = result["writes_follow_reads"]
    assert wfr["valid"] is False and wfr["by_replica"] == {"hello-2": 1}
    # Real time alone cannot order x and y (x's write ended after y's began): monotonic
    # reads had nothing it could decide, and says so.
    assert result["monotonic_reads"]["valid"] is None
    assert result["monotonic_reads"]["judged"] == 0


def test_writing_the_initial_value_again_is_no_writes_follow_reads_violation():
    """Five operations one after another: a reads the key absent and writes x; b reads
    x, writes the initial value (null) again, and reads it back. Reading null after x is
    no going back: b's own write put it there."""
    h = history(r("a", None, 0, 1), w("a", "x", 2, 3), r("b", "x", 4, 5),
                w("b", None, 6, 7), r("b", None, 8, 9, replica="hello-2"))
    result = check_session_guarantees(h)
    assert result["writes_follow_reads"]["violations"] == 0
    assert result["writes_follow_reads"]["valid"] is not False
    # The same five with a fresh value instead: x read, then the older "a0": a violation.
    h = history(w("a", "a0", 0, 1), r("a", "a0", 1.5, 1.8), w("a", "x", 2, 3),
                r("b", "x", 4, 5), r("b", "a0", 8, 9, replica="hello-2"))
    wfr = check_session_guarantees(h)["writes_follow_reads"]
    assert wfr["valid"] is False and wfr["violations"] == 1


def test_a_failed_compare_of_its_own_write_is_a_read_your_writes_violation():
    """a writes v1, then its compare-and-set expecting v1 fails although no other write
    could have come between: it did not see its own write. With another write that could
    have, nothing is decided."""
    h = history(w("a", "v1", 0, 1), cas("a", "v1", "v2", 2, 3, swapped=False,
                                        replica="hello-2"))
    ryw = check_session_guarantees(h)["read_your_writes"]
    assert ryw["valid"] is False and ryw["by_replica"] == {"hello-2": 1}
    assert "expecting its own write before" in ryw["examples"][0]["message"]
    h = history(w("a", "v1", 0, 1), w("b", "v9", 0.5, 2.5),
                cas("a", "v1", "v2", 2, 3, swapped=False))
    ryw = check_session_guarantees(h)["read_your_writes"]
    assert ryw["violations"] == 0 and ryw["judged"] == 1
    # A swap after its own write: a read of it, then a write of the new value.
    h = history(w("a", "v1", 0, 1), cas("a", "v1", "v2", 2, 3), r("a", "v2", 4, 5))
    result = check_session_guarantees(h)
    assert result["read_your_writes"]["valid"] is True
    assert result["read_your_writes"]["judged"] == 2


def test_reads_the_order_cannot_place_are_not_judged():
    """Values written twice (Jepsen's small integers) tell no version from another: the
    guarantees have nothing to judge and say so rather than pass."""
    h = history(w("a", 1, 0, 1), w("b", 1, 2, 3), r("a", 1, 4, 5), r("a", 1, 6, 7),
                w("b", 2, 0.5, 9), r("b", 2, 10, 11), r("b", 1, 12, 13))
    result = check_session_guarantees(h)
    for name in ("read_your_writes", "monotonic_reads", "writes_follow_reads"):
        assert result[name]["valid"] is None, (name, result[name])
        assert result[name]["reason"]


def test_session_guarantees_with_nothing_to_judge():
    result = check_session_guarantees(history(w("a", 1, 0, 1), r("b", 1, 2, 3)))
    assert result["read_your_writes"]["valid"] is None
    assert result["read_your_writes"]["reason"]


def test_unknown_own_write_does_not_bind_reads():
    h = history(w("a", 1, 0, 1), w("a", 2, 2, 3, outcome="unknown"), r("a", 1, 4, 5))
    assert check_session_guarantees(h)["read_your_writes"]["valid"] is True


# -- login sessions --------------------------------------------------------------------

def login(process, user, a, b, **kw):
    return op(process, "login", a, b, value=user, key=None, **kw)


def me(process, seen, a, b, **kw):
    return op(process, "session", a, b, seen=seen, key=None, **kw)


def test_a_logged_out_request_on_one_replica():
    h = history(login("u1", "ada", 0, 1, replica="hello-1"), me("u1", "ada", 2, 3),
                me("u1", None, 4, 5, replica="hello-2", status=401),
                me("u1", "ada", 6, 7, replica="hello-1"),
                me("u2", None, 6, 7, replica="hello-2", status=401))  # never logged in
    result = check_login_sessions(h)
    assert result["valid"] is False and result["violations"] == 1
    assert result["by_replica"] == {"hello-2": 1}
    assert "hello-2 answered 401" in result["examples"][0]["message"]
    assert result["honoured"] == 2


def test_redirects_and_other_users_are_violations_errors_are_not_judged():
    h = history(login("u1", "ada", 0, 1), me("u1", None, 2, 3, status=302, replica="h2"),
                me("u1", "bob", 4, 5, replica="h3"), me("u1", None, 6, 7, status=503),
                me("u1", None, 8, 9, outcome="unknown"))
    result = check_login_sessions(h)
    assert result["violations"] == 2 and result["by_replica"] == {"h2": 1, "h3": 1}
    assert result["not_judged"] == 2


def test_no_login_is_not_checked():
    assert check_login_sessions(history(me("u1", None, 0, 1, status=401)))["valid"] is None


# -- checks for the verdict -------------------------------------------------------------

def test_state_checks_not_applicable_without_ops():
    checks = state_checks(state_findings([]), Thresholds())
    assert {c.name for c in checks} == {
        "register_linearizable", "set_lost", "set_unexpected", "set_stale",
        "session_read_your_writes", "session_monotonic_reads", "session_monotonic_writes",
        "session_writes_follow_reads", "sessions_honoured", "add_counter_lost",
        "add_counter_extra", "list_lost", "list_duplicated", "list_reordered", "list_stale"}
    assert all(c.status == "not applicable" for c in checks)


def test_state_checks_over_a_mixed_history():
    h = history(w("a", "v1", 0, 1), w("a", "v2", 2, 3), r("a", "v1", 4, 5, replica="hello-2"),
                add("b", 1, 0, 1), read_all("b", [1], 2, 3),
                login("c", "ada", 0, 1), me("c", "ada", 2, 3),
                incr("d", 2, 0, 1), read_counter("d", 2, 2, 3),
                append("e", "x", 0, 1), read_list("e", ["x"], 2, 3),
                read_list("e", ["x"], 4, 5))
    findings = state_findings(h)
    assert findings["ops"] == {"register": 3, "set": 2, "login": 2, "counter": 2, "list": 3,
                               "other": 0}
    status = {c.name: c.status for c in state_checks(findings, Thresholds())}
    assert status == {
        "register_linearizable": "fail", "set_lost": "pass", "set_unexpected": "pass",
        "set_stale": "pass", "session_read_your_writes": "fail",
        "session_monotonic_reads": "not checked", "session_monotonic_writes": "not checked",
        "session_writes_follow_reads": "not checked", "sessions_honoured": "pass",
        "add_counter_lost": "pass", "add_counter_extra": "pass", "list_lost": "pass",
        "list_duplicated": "pass", "list_reordered": "pass", "list_stale": "pass"}
    register = next(c for c in state_checks(findings, Thresholds())
                    if c.name == "register_linearizable")
    assert register.evidence["violations"][0]["replica"] == "hello-2"


def test_state_check_not_checked_carries_the_reason():
    ops = [w(f"p{i}", i, 0, 10 + i) for i in range(12)] + \
        [r(f"q{i}", i, 1, 19) for i in range(12)] + [r("q", 99, 1, 30)]
    findings = state_findings(history(*ops), max_states=50)
    check = next(c for c in state_checks(findings, Thresholds())
                 if c.name == "register_linearizable")
    assert check.status == "not checked" and "50 configurations" in check.reason
