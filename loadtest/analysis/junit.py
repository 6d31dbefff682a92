"""The verdict's checks as a JUnit XML report, for CI's own test pages.

One ``<testcase>`` per check: ``classname`` is its topic (``scalecheck.consistency``,
``scalecheck.load``, ...; GitLab shows it as the suite), ``name`` the check's name.
Its value, threshold, status, detail, reason and evidence are ``<properties>``
and, for the viewers that show no properties (GitLab, GitHub reporters), the
same in ``<system-out>``.

Status mapping:

- pass: a plain ``<testcase>``;
- fail: ``<failure>`` (the threshold was not met);
- **not checked** (the check applies but could not be made): ``<error>``;
- not applicable: ``<skipped>``.

Why ``<error>`` for *not checked*: a not-checked check must not read as green,
and ``<skipped>`` does in every common viewer. GitLab's test report counts
skipped tests apart and lists only failed and errored ones in the merge request
widget ("newly encountered errors"); dorny/test-reporter maps ``<error>`` to
*failed* and ``<skipped>`` to *skipped*, and its check run concludes success
with skipped tests; EnricoMi/publish-unit-test-result-action counts errors
apart (🔥) and its default ``fail_on: "test failures"`` fails the check on
failures *or errors*, never on skips (💤); Jenkins' JUnit plugin reads
``<error>`` as a failed test (build unstable) and ``<skipped>`` as skipped
(build stays green). JUnit's own meaning fits too: ``<failure>`` is an assertion
that did not hold, ``<error>`` a test that could not be carried out. A not
applicable check, which does not concern the run, is the one that is skipped.
"""

from __future__ import annotations

import json
import os
import socket
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

from loadtest.analysis.topics import topic_of

EVIDENCE_CHARS = 4000  # per check: enough to see the examples, not a whole history


def topic(name: str) -> str:
    """The topic a check belongs to (``other`` for names the table does not know)."""
    return topic_of(name).key


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return _json(value)
    return str(value)


def _json(value: object) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False, sort_keys=True)
    if len(text) > EVIDENCE_CHARS:
        text = text[:EVIDENCE_CHARS] + f"... ({len(text):,} characters, truncated)"
    return text


def _message(check: dict) -> str:
    status = check["status"]
    value, threshold = _text(check.get("value")) or "—", _text(check.get("threshold")) or "—"
    if status == "fail":
        return f"{check['name']}: {value} against the threshold {threshold}"
    if status == "not checked":
        return f"not checked: {check.get('reason') or 'the check could not be made'}"
    return check.get("reason") or "does not concern this run"


def _case(check: dict) -> ET.Element:
    case = ET.Element("testcase", classname=f"scalecheck.{topic(check['name'])}",
                      name=str(check["name"]), time="0")
    props = ET.SubElement(case, "properties")
    fields = {"status": check["status"], "value": check.get("value"),
              "threshold": check.get("threshold"), "detail": check.get("detail"),
              "reason": check.get("reason"), "evidence": check.get("evidence") or None}
    for key, value in fields.items():
        if value not in (None, ""):
            ET.SubElement(props, "property", name=key, value=_text(value))
    status = check["status"]
    body = "\n".join(f"{k}: {_text(v)}" for k, v in fields.items() if v not in (None, ""))
    if status == "fail":
        ET.SubElement(case, "failure", message=_message(check), type="threshold").text = body
    elif status == "not checked":
        ET.SubElement(case, "error", message=_message(check), type="not checked").text = body
    elif status == "not applicable":
        ET.SubElement(case, "skipped", message=_message(check)).text = body
    ET.SubElement(case, "system-out").text = body
    return case


def junit_tree(summary: dict) -> ET.ElementTree:
    """The JUnit document of one analysed run (its summary.json content)."""
    checks = summary.get("checks") or []
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    root = ET.Element("testsuites", name=f"scalecheck {summary.get('run_id', '')}".strip())
    suites: dict[str, ET.Element] = {}
    started = (summary.get("run") or {}).get("started")
    stamp = datetime.fromtimestamp(started, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") \
        if isinstance(started, (int, float)) else None
    for check in checks:
        name = f"scalecheck.{topic(check['name'])}"
        suite = suites.get(name)
        if suite is None:
            suite = suites[name] = ET.SubElement(root, "testsuite", name=name)
            if stamp:
                suite.set("timestamp", stamp)
            suite.set("hostname", socket.gethostname())
        suite.append(_case(check))
    for suite in suites.values():
        cases = suite.findall("testcase")
        tally = {"tests": len(cases),
                 "failures": sum(1 for c in cases if c.find("failure") is not None),
                 "errors": sum(1 for c in cases if c.find("error") is not None),
                 "skipped": sum(1 for c in cases if c.find("skipped") is not None)}
        for key, n in tally.items():
            suite.set(key, str(n))
            counts[key] += n
        suite.set("time", "0")
    for key, n in counts.items():
        root.set(key, str(n))
    root.set("time", "0")
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(summary: dict, path: str | os.PathLike) -> Path:
    """Write the JUnit report of ``summary`` to ``path`` (replaced atomically)."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    junit_tree(summary).write(tmp, encoding="utf-8", xml_declaration=True)
    os.replace(tmp, path)
    return path


__all__ = ["junit_tree", "topic", "write_junit"]
