"""Replica timelines of autoscaled runs set against each other (issue 24's comparison):
pure functions over summaries, the figure, and the compare report's table."""

from __future__ import annotations

from loadtest.analysis.side_by_side import render_compare_markdown, side_by_side
from loadtest.analysis.timelines import compare_timelines, difference, timeline


def _summary(policy: str, replicas: list[int], changes: list[list]) -> dict:
    return {"run_id": policy, "verdict": "pass", "checks": [],
            "autoscaling": {"policy": policy, "series": {"replicas": replicas},
                            "changes_at": changes, "replica_seconds": sum(replicas),
                            "decisions": len(changes), "max_time_to_scale_s": 12.0}}


REAL = _summary("cluster", [1] * 10 + [3] * 60 + [1] * 30, [[0, 1], [8.5, 3], [68.0, 1]])
# the simulation: the same steps, 5 s later up, one replica more for 10 s in the plateau
SIM = _summary("hpa", [1] * 15 + [3] * 30 + [4] * 10 + [3] * 20 + [1] * 25,
               [[0, 1], [13.0, 3], [43.0, 4], [53.0, 3], [73.0, 1]])


def test_the_difference_outside_each_change_s_settling_window():
    base, other = timeline(REAL), timeline(SIM)
    d = difference(base, other, settle_s=30)
    assert d["max_abs_diff"] == 2 and d["max_abs_diff_at_s"] == 10  # 3 vs 1, in the lag
    # seconds 8..38 and 68..98 settle; the extra replica at 45..54 is outside them
    assert d["max_abs_diff_outside_settle"] == 1
    assert d["seconds_apart"] == 5 + 10 + 5
    assert d["replica_seconds"] == (sum(REAL["autoscaling"]["series"]["replicas"]),
                                    sum(SIM["autoscaling"]["series"]["replicas"]))
    assert d["changes"] == (3, 5)
    same = difference(base, base)
    assert same["max_abs_diff"] == 0 and same["replica_seconds_ratio"] == 1.0


def test_runs_without_an_autoscaler_are_left_out():
    plain = {"run_id": "levels", "checks": []}
    model = compare_timelines([plain, REAL, SIM], ["levels", "real", "sim"])
    assert [r["name"] for r in model["runs"]] == ["real", "sim"] and model["first"] == "real"
    assert compare_timelines([plain], ["levels"]) is None


def test_the_compare_report_says_it_and_draws_it(tmp_path):
    model = side_by_side([REAL, SIM], ["real", "sim"])
    text = render_compare_markdown(model)
    assert "Replicas over time, against `real`" in text
    assert "| `sim` | 2 (10) | 1 |" in text
    from loadtest.analysis.figures import replica_timelines_figure

    png = replica_timelines_figure(model["timelines"], tmp_path / "r.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "r.png").stat().st_size > 5000
