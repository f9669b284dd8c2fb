"""Helpers shared by the experiment modules: configs, reading histories, statistics, plots."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np

from eaglelab.experiments.base import Claim

C = TypeVar("C")

# one colour and marker per method, the same in every figure
STYLE: dict[str, dict[str, Any]] = {
    "eagle": {"color": "#1f77b4", "marker": "o", "label": "EAGLE"},
    "eagle_estimate": {"color": "#17becf", "marker": "D", "label": "EAGLE (estimation form)"},
    "eagle_frozen": {"color": "#1f77b4", "marker": "o", "label": "EAGLE (accelerated)"},
    "eagle_plain": {"color": "#9467bd", "marker": "v", "label": "EAGLE (plain)"},
    "lstsq": {"color": "#d62728", "marker": "s", "label": "lstsq (SVD)"},
    "cg": {"color": "#2ca02c", "marker": "^", "label": "CG (normal eq.)"},
    "gd": {"color": "#ff7f0e", "marker": "v", "label": "GD"},
    "sgd": {"color": "#ff7f0e", "marker": "v", "label": "SGD (sketch GD)"},
    "lsmr": {"color": "#8c564b", "marker": "P", "label": "LSMR"},
    "sketch_precond": {"color": "#7f7f7f", "marker": "X", "label": "sketch-precond. LSQR"},
    "distributed_gd": {"color": "#ff7f0e", "marker": "v", "label": "distributed GD"},
    "bound": {"color": "black", "marker": "", "label": "bound"},
}


def make_config(cls: type[C], quick_values: dict[str, Any], quick: bool, seeds: int | None,
                overrides: dict[str, Any]) -> C:
    """cls() (full run) or cls(**quick_values); then `seeds` and `overrides` on top.
    Unknown override keys raise ValueError naming them and the valid ones."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown config keys {unknown} for {cls.__module__}.{cls.__name__}; "
                         f"valid keys: {sorted(names)}")
    values = dict(quick_values) if quick else {}
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values.update({k: _coerce(k, defaults[k], v) for k, v in overrides.items()})
    if seeds is not None:
        values["seeds"] = int(seeds)
    return cls(**values)


def _coerce(name: str, default: Any, value: Any) -> Any:
    """A command-line override (text) as the type of the field's default (the one parser,
    `eaglelab.settings.parse_setting`)."""
    from eaglelab.settings import parse_setting

    return parse_setting(f"config key {name}", value, default)


def first_below(errors: Sequence[float], eps: float) -> int | None:
    """1-based iteration at which the error first drops to <= eps (None if never)."""
    for i, e in enumerate(errors):
        if e is not None and np.isfinite(e) and e <= eps:
            return i + 1
    return None


def time_to(history: Any, eps: float) -> float | None:
    """Wall time (history.seconds) at which history.error first drops to <= eps."""
    k = first_below(history.error, eps)
    return None if k is None else float(history.seconds[k - 1])


def seconds_per_iteration(history: Any) -> float:
    """Median time of one iteration (differences of history.seconds; setup excluded)."""
    s = np.asarray(history.seconds, dtype=float)
    if s.size < 2:
        return float(s[0]) if s.size else float("nan")
    return float(np.median(np.diff(s)))


def median(values: Sequence[float | None]) -> float | None:
    """Median of the values that are not None (None if none are)."""
    v = [float(x) for x in values if x is not None and np.isfinite(x)]
    return float(np.median(v)) if v else None


def censored_quantiles(values: Sequence[float | None], qs=(0.25, 0.75)) -> list[float | None]:
    """Quantiles of counts to a target where None means "not reached within the budget": a
    miss counts as larger than every reached value (not dropped, which would make a method
    that reaches the target on 3 of 10 problems look as fast as its 3 lucky ones), and a
    quantile that falls on a miss is None.  NaN counts as a miss too.  Linear interpolation
    between order statistics, as np.quantile."""
    if not len(values):
        return [None for _ in qs]
    v = np.sort([np.inf if x is None or not np.isfinite(x) else float(x) for x in values])
    out: list[float | None] = []
    for q in qs:
        pos = q * (len(v) - 1)
        lo, hi, t = int(np.floor(pos)), int(np.ceil(pos)), pos - np.floor(pos)
        out.append(None if not np.isfinite(v[hi]) else float(v[lo] + t * (v[hi] - v[lo])))
    return out


def censored_median(values: Sequence[float | None]) -> float | None:
    """`censored_quantiles` at 0.5: None when the median problem missed the target."""
    return censored_quantiles(values, (0.5,))[0]


def quantiles(values: Sequence[float | None], qs=(0.25, 0.75)) -> list[float | None]:
    v = [float(x) for x in values if x is not None and np.isfinite(x)]
    return [float(np.quantile(v, q)) for q in qs] if v else [None for _ in qs]


def fraction(values: Sequence[Any]) -> float:
    return float(np.mean([v is not None for v in values])) if len(values) else 0.0


def fit_line(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares slope and intercept of y against x."""
    slope, intercept = np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)
    return float(slope), float(intercept)


def median_curve(curves: Sequence[Sequence[float]]) -> list[float]:
    """Point-wise median of curves of different lengths (a curve that stopped early holds
    its last value, as a converged solver's error does)."""
    if not curves:
        return []
    L = max(len(c) for c in curves)
    M = np.array([list(c) + [c[-1]] * (L - len(c)) for c in curves], dtype=float)
    return np.median(M, axis=0).tolist()


# appended to the text of a claim whose rule was set (or changed) after the data it decides
# had been seen, as the science standards require (docs/reproduction.md, "Verdict rules")
AFTER_DATA = " [rule set after seeing data: docs/reproduction.md, Verdict rules]"

# the one window for "a log-log slope close to 1" (rounds ~ 1/alpha): +-30%, ours
SLOPE_ONE = (0.7, 1.3)


def claim(text: str, paper: Any, ours: Any, ok: bool, why_ok: str, why_not: str) -> Claim:
    return Claim(text, paper, ours, "agrees" if ok else "differs", why_ok if ok else why_not)


def code_check(text: str, paper: Any, ours: Any, ok: bool, why: str) -> Claim:
    """A property that holds by construction (algebra our code implements): passing checks
    our code and is "not tested" as a claim about the paper ("code check passed: why");
    failing is a bug in our code and "differs"."""
    if ok:
        return Claim(text, paper, ours, "not tested", f"code check passed: {why}")
    return Claim(text, paper, ours, "differs", f"code check FAILED (a bug in our code): {why}")


def untested(text: str, paper: Any, ours: Any, why: str) -> Claim:
    """A claim our measurement cannot decide (said so, never counted as agreeing)."""
    return Claim(text, paper, ours, "not tested", why)


def figure(ncols: int = 1, nrows: int = 1, width: float = 5.2, height: float = 3.9):
    """A matplotlib Figure (Agg, no pyplot state) and its axes array, shared style."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat:
        ax.grid(True, which="major", alpha=0.3)
        ax.tick_params(labelsize=9)
    return fig, axes


def set_ticks(ax: Any, axis: str, values: Sequence[float], labels: Sequence[str] | None = None) -> None:
    """Major ticks exactly at `values` (log axes too), no minor tick labels."""
    from matplotlib.ticker import NullFormatter

    labels = [f"{v:g}" for v in values] if labels is None else list(labels)
    if axis == "x":
        ax.set_xticks(list(values), labels)
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.set_yticks(list(values), labels)
        ax.yaxis.set_minor_formatter(NullFormatter())


def style(method: str, **extra: Any) -> dict[str, Any]:
    s = dict(STYLE.get(method, {"label": method}))
    s.update(extra)
    return s


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "—"
    if 1000 <= abs(x) < 1e9:  # counts and large times: no exponent
        return f"{x:.0f}"
    return f"{x:.{digits}g}"
