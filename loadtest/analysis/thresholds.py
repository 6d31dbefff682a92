"""Thresholds of the verdict: defaults, then ``[tool.scalecheck.thresholds]`` in the
project's pyproject.toml, then the command line, each overriding the one before."""

from __future__ import annotations

import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class Thresholds:
    max_error_rate: float = 0.01
    """Highest error rate allowed in any stage's steady window."""
    min_jain: float = 0.90
    """Lowest Jain fairness index allowed for any stage with 2+ replicas."""
    max_cv: float | None = None
    """Highest coefficient of variation of per-replica rates (off by default)."""
    min_chi2_p: float | None = None
    """Lowest chi-square p-value against an even split (off by default)."""
    max_p99_ms: float | None = None
    """Highest p99 latency in any stage's steady window, ms (off by default)."""
    min_scaling_efficiency: float | None = None
    """Lowest scaling efficiency of any stage against the first (off by default)."""
    clock_skew_ms: float = 10.0
    """Margin for real-time order between records of different workers."""
    transition_margin_s: float = 1.0
    """How long after 'ready' a scale change still counts as transition."""
    max_rps_drop: float = 0.25
    """With --baseline: largest allowed relative drop of a level's requests/s."""
    max_p99_increase: float = 0.50
    """With --baseline: largest allowed relative rise of a level's p99 latency."""

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def doc(cls, name: str) -> str:
        import inspect

        src = inspect.getsource(cls)
        marker = f"    {name}:"
        after = src.split(marker, 1)[1].split('"""')
        return after[1].strip() if len(after) > 1 else ""


class ThresholdError(Exception):
    pass


def from_pyproject(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ThresholdError(f"{path}: does not parse as TOML ({exc})") from None
    table = data.get("tool", {}).get("scalecheck", {}).get("thresholds", {})
    unknown = set(table) - set(Thresholds.names())
    if unknown:
        raise ThresholdError(f"{path}: unknown threshold(s) in [tool.scalecheck.thresholds]: "
                             f"{', '.join(sorted(unknown))}")
    return table


def resolve(cli: dict, pyproject: Path | None = Path("pyproject.toml")) -> Thresholds:
    values = from_pyproject(pyproject) if pyproject else {}
    values.update({k: v for k, v in cli.items() if v is not None})
    try:
        return replace(Thresholds(), **{k: (None if v == "off" else float(v))
                                        for k, v in values.items()})
    except (TypeError, ValueError) as exc:
        raise ThresholdError(f"bad threshold value: {exc}") from None
