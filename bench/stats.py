"""Summaries of timing samples. Pure functions; seconds in, seconds out."""

from __future__ import annotations

import math
from typing import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between ranks
    (numpy's default), so p50 of an even count is the mean of the middle two.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.5
    >>> round(percentile([1.0, 2.0, 3.0, 4.0], 95), 2)
    3.85
    >>> percentile([7.0], 95)
    7.0
    """
    if not values:
        raise ValueError("percentile of no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be from 0 to 100, not {q}")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary(values: Sequence[float]) -> dict:
    """``{"n", "p50", "p95", "mean", "min", "max"}`` of the samples; ``{"n": 0}`` for none.

    >>> summary([1.0, 3.0])
    {'n': 2, 'p50': 2.0, 'p95': 2.9, 'mean': 2.0, 'min': 1.0, 'max': 3.0}
    >>> summary([])
    {'n': 0}
    """
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "mean": sum(values) / len(values), "min": min(values), "max": max(values)}


def scaled(stats: dict, factor: float) -> dict:
    """The timing fields of a ``summary`` times ``factor`` (seconds to milliseconds).

    >>> scaled({"n": 2, "p50": 0.002, "p95": 0.003, "mean": 0.0025, "min": 0.002,
    ...         "max": 0.003}, 1000)["p95"]
    3.0
    """
    return {k: (v if k == "n" else v * factor) for k, v in stats.items()}
