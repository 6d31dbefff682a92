"""How many replicas for a given load? Capacity within the SLO and the scalability law.

Pure functions over summary.json's ``levels`` (each: ``level``, ``rps``,
``requests``, ``seconds``, ``error_rate``, ``latency_ms`` {p50, p90, p95, p99})
and the latency objective ``slo_p95_ms``:

- ``capacity_within_slo``: requests/s per replica at each replica count whose
  p95 met the SLO (and whose errors stayed under ``max_error_rate``). It is what
  the replicas *served*: a lower bound of their capacity unless the load
  saturated them (the bottleneck analysis says which part did).
- ``fit_usl``: Gunther's Universal Scalability Law fitted to throughput against
  replicas (scipy's bounded least squares).
- ``replicas_for``: the plain answer "for R req/s at p95 ≤ S ms: N replicas",
  from a measured count when one served R within the SLO, else from the fitted
  law, else why it cannot be said.
- ``capacity_findings``: all three, as the summary's plain data.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

#: Below this share of the throughput's variation explained, the law does not describe it.
MIN_R2 = 0.9
#: The most replicas the answer extrapolates to.
MAX_REPLICAS = 10_000


def usl(n, sigma: float, kappa: float, lam: float):
    """Throughput at ``n`` replicas: λN / (1 + σ(N−1) + κN(N−1))."""
    n = np.asarray(n, dtype=float)
    return lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))


def _points(levels: list[dict]) -> list[dict]:
    """Levels with a replica count and a finite, positive throughput, by count."""
    out = []
    for lv in levels:
        n, rps = lv.get("level"), lv.get("rps")
        if isinstance(n, (int, float)) and isinstance(rps, (int, float)) and n >= 1 \
                and math.isfinite(rps) and rps > 0:
            out.append(lv)
    return sorted(out, key=lambda lv: lv["level"])


def _p95(lv: dict) -> float | None:
    value = (lv.get("latency_ms") or {}).get("p95")
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def capacity_within_slo(levels: list[dict], slo_p95_ms: float | None,
                        max_error_rate: float = 0.01) -> dict:
    """Per replica count: requests/s per replica, and whether p95 and errors met the SLO;
    then the lowest and highest of those that did (``None`` with a reason otherwise)."""
    rows = []
    for lv in _points(levels):
        p95 = _p95(lv)
        errors = lv.get("error_rate")
        within = None
        if slo_p95_ms is not None and p95 is not None:
            within = p95 <= slo_p95_ms and (errors is None or errors <= max_error_rate)
        rows.append({"level": lv["level"], "rps": lv["rps"], "p95_ms": p95,
                     "error_rate": errors, "per_replica": lv["rps"] / lv["level"],
                     "within_slo": within})
    good = [r for r in rows if r["within_slo"]]
    reason = ""
    if slo_p95_ms is None:
        reason = "no latency objective (--slo-p95-ms): capacity within it cannot be said"
    elif not rows:
        reason = "no replica count served any request"
    elif not good:
        reason = f"no replica count met p95 ≤ {slo_p95_ms:g} ms with errors ≤ " \
                 f"{100 * max_error_rate:g} %"
    return {"slo_p95_ms": slo_p95_ms, "per_level": rows,
            "min": min((r["per_replica"] for r in good), default=None),
            "max": max((r["per_replica"] for r in good), default=None),
            "levels": [r["level"] for r in good], "reason": reason}


def fit_usl(levels: list[dict], min_r2: float = MIN_R2) -> dict:
    """Gunther's Universal Scalability Law, X(N) = λN / (1 + σ(N−1) + κN(N−1)), fitted
    to the throughput X at each replica count N.

    - λ (lambda): requests/s of one replica with nothing shared: the slope of ideal,
      linear scaling.
    - σ (sigma), contention, 0 to 1: the share of the work that waits its turn for
      something shared (a lock, a single Redis, the balancer, the cores of one
      machine). It bends the curve towards a ceiling of λ/σ, as Amdahl's law does.
    - κ (kappa), coherency: the cost each replica pays for every other one (keeping
      shared state consistent, crosstalk), growing with N². With κ > 0 throughput
      peaks at N* = sqrt((1 − σ)/κ) replicas and falls beyond.

    Not fitted, with the reason, under 3 replica counts (three coefficients), when the
    optimiser fails, or when the law explains less than ``min_r2`` of the variation
    (R²: noise, or a ceiling that is not the replicas'). With exactly 3 counts the fit
    is exact and R² says nothing; ``exact`` marks it."""
    points = _points(levels)
    counts = sorted({lv["level"] for lv in points})
    out: dict = {"fitted": False, "points": len(points), "replica_counts": counts,
                 "sigma": None, "kappa": None, "lambda": None, "r2": None,
                 "peak_replicas": None, "peak_rps": None, "exact": False, "reason": ""}
    if len(counts) < 3:
        out["reason"] = f"{len(counts)} replica count(s) measured: the law has three " \
                        "coefficients and needs at least 3"
        return out

    # Here, not at the top: scipy.optimize takes 0.4 s to import, and every analysis
    # imports this module while only runs of three or more replica counts fit the law.
    from scipy.optimize import OptimizeWarning, curve_fit

    n = np.array([lv["level"] for lv in points], dtype=float)
    x = np.array([lv["rps"] for lv in points], dtype=float)
    first = x[n == n.min()].mean() / n.min()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)  # exact fits: no covariance
            (sigma, kappa, lam), _ = curve_fit(
                usl, n, x, p0=(0.05, 0.001, first), bounds=([0, 0, 0], [1, np.inf, np.inf]),
                maxfev=20000)
    except (RuntimeError, ValueError) as exc:
        out["reason"] = f"the fit did not converge ({str(exc)[:80]})"
        return out
    predicted = usl(n, sigma, kappa, lam)
    total = float(((x - x.mean()) ** 2).sum())
    residual = float(((x - predicted) ** 2).sum())
    r2 = 1 - residual / total if total > 0 else (1.0 if residual == 0 else 0.0)
    if kappa > 0:
        peak = max(1.0, math.sqrt(max(0.0, 1 - sigma) / kappa))
    else:
        peak = math.inf  # no coherency cost: throughput only levels off, towards λ/σ
    out.update(sigma=float(sigma), kappa=float(kappa), **{"lambda": float(lam)},
               r2=round(r2, 4), peak_replicas=peak,
               peak_rps=float(usl(peak, sigma, kappa, lam)) if math.isfinite(peak)
               else (lam / sigma if sigma > 0 else math.inf),
               exact=len(points) == 3)
    if r2 < min_r2:
        out["reason"] = f"the law explains only R² = {r2:.2f} of the throughput's variation " \
                        f"(at least {min_r2:g} needed): throughput does not follow it " \
                        "(noise, or a bottleneck that is not the replicas)"
        return out
    out["fitted"] = True
    return out


def replicas_for(rate: float | None, capacity: dict, fit: dict,
                 rate_source: str = "given") -> dict:
    """The plain answer for ``rate`` requests/s at the SLO: the smallest measured replica
    count that served it within the SLO; else, from the fitted law, the smallest count
    whose throughput reaches it; else None with the reason."""
    slo = capacity.get("slo_p95_ms")
    out = {"rate": rate, "rate_source": rate_source, "slo_p95_ms": slo, "replicas": None,
           "how": None, "sentence": ""}
    if rate is None or not math.isfinite(rate) or rate <= 0:
        out["sentence"] = "the replicas needed cannot be said: no request rate to size for"
        return out
    head = f"for {rate:,.0f} req/s at p95 ≤ {slo:g} ms" if slo is not None else \
        f"for {rate:,.0f} req/s"
    if slo is None:
        out["sentence"] = f"{head}: cannot be said without a latency objective (--slo-p95-ms)"
        return out
    served = [r for r in capacity["per_level"] if r["within_slo"] and r["rps"] >= rate]
    if served:
        best = min(served, key=lambda r: r["level"])
        out.update(replicas=best["level"], how="measured")
        out["sentence"] = f"{head}: {best['level']} replica(s) (measured: " \
                          f"{best['rps']:,.0f} req/s at p95 {best['p95_ms']:.0f} ms)"
        return out
    if not fit.get("fitted"):
        why = capacity.get("reason") or "no replica count in the run served it within the SLO"
        out["sentence"] = f"{head}: cannot be said: {why}; and the scalability law was not " \
                          f"fitted ({fit.get('reason') or 'no fit'})"
        return out
    sigma, kappa, lam = fit["sigma"], fit["kappa"], fit["lambda"]
    if fit["peak_rps"] is not None and fit["peak_rps"] < rate:
        at = fit["peak_replicas"]
        where = f"at {at:.0f} replicas" if math.isfinite(at) else "however many replicas"
        out["sentence"] = f"{head}: cannot be reached: the fitted law peaks at " \
                          f"{fit['peak_rps']:,.0f} req/s {where}"
        return out
    top = fit["peak_replicas"] if math.isfinite(fit["peak_replicas"]) else MAX_REPLICAS
    counts = np.arange(1, int(min(math.ceil(top), MAX_REPLICAS)) + 1)
    throughput = usl(counts, sigma, kappa, lam)
    reached = np.nonzero(throughput >= rate)[0]
    if reached.size:
        n = int(counts[reached[0]])
        out.update(replicas=n, how="extrapolated (Universal Scalability Law)")
        out["sentence"] = f"{head}: about {n} replicas (extrapolated with the Universal " \
                          "Scalability Law from the throughput measured; p95 at that " \
                          "load was not measured)"
    elif math.isfinite(fit["peak_replicas"]):
        best = int(counts[int(np.argmax(throughput))])
        out["sentence"] = f"{head}: cannot be reached: the fitted law gives at most " \
                          f"{float(throughput.max()):,.0f} req/s, at {best} replicas"
    else:
        out["sentence"] = f"{head}: cannot be said: more than {MAX_REPLICAS:,} replicas"
    return out


def capacity_findings(levels: list[dict], slo_p95_ms: float | None,
                      rate: float | None = None, max_error_rate: float = 0.01,
                      replica_bound: set[int] | None = None) -> dict:
    """Capacity within the SLO, the scalability law and the plain answer, together.

    ``rate``: the load to size for (default: the highest throughput of the run);
    ``replica_bound``: if given, the law is fitted only to the replica counts where
    the replicas limited throughput (elsewhere throughput measures another part).

    Returns ``{"capacity_per_replica": {slo_p95_ms, per_level: [{level, rps, p95_ms,
    error_rate, per_replica, within_slo}], min, max, levels, reason}, "usl": {fitted,
    points, replica_counts, sigma, kappa, lambda, r2, peak_replicas, peak_rps, exact,
    reason}, "answer": {rate, rate_source, slo_p95_ms, replicas, how, sentence}}``
    (``peak_replicas`` may be ``inf``: no coherency cost, no peak)."""
    capacity = capacity_within_slo(levels, slo_p95_ms, max_error_rate)
    fitted_on = levels if replica_bound is None else \
        [lv for lv in levels if lv.get("level") in replica_bound]
    fit = fit_usl(fitted_on)
    if replica_bound is not None and not fit["fitted"]:
        fit["reason"] = (fit["reason"] + "; " if fit["reason"] else "") + \
            "fitted only where the replicas limited throughput"
    source = "given"
    if rate is None:
        rates = [r["rps"] for r in capacity["per_level"]]
        rate = max(rates) if rates else None
        source = "the highest throughput of the run"
    return {"capacity_per_replica": capacity, "usl": fit,
            "answer": replicas_for(rate, capacity, fit, source)}
