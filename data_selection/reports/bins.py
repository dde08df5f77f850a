"""Histogram bin edges shared by the PNG charts and ``report.html``."""

from __future__ import annotations

import numpy as np


def key_bins(values: np.ndarray, n: int = 60) -> np.ndarray:
    """Bin edges over the 0.2–99.8% quantiles of ``values`` plus 2% margins (outliers go to the end bins)."""
    lo, hi = np.quantile(values, [0.002, 0.998]) if len(values) else (0.0, 1.0)
    span = hi - lo or 1.0
    return np.linspace(lo - 0.02 * span, hi + 0.02 * span, n)


def log_bins(values: np.ndarray, n: int = 50) -> np.ndarray:
    """``n`` log-spaced edges from the smallest to the largest positive value."""
    v = values[np.isfinite(values) & (values > 0)]
    lo, hi = (float(v.min()), float(v.max())) if len(v) else (1.0, 10.0)
    return np.geomspace(max(lo, 1e-9), max(hi, lo * 1.01), n)


def integer_log_bins(values: np.ndarray, n: int = 50) -> np.ndarray:
    """Log-spaced edges for integer counts (token lengths): every edge a half-integer, every bin one integer or more.

    Plain log edges over integers leave bins narrower than 1 that hold no integer at the short end, so the
    histogram is a comb (every other bin empty). Here the log-spaced edges are rounded to half-integers and
    repeats dropped: the short end gets one bin per integer, the long end stays log-spaced.
    """
    v = values[np.isfinite(values) & (values > 0)]
    lo, hi = (int(np.floor(v.min())), int(np.ceil(v.max()))) if len(v) else (1, 10)
    hi = max(hi, lo + 1)
    edges = np.unique(np.round(np.geomspace(lo - 0.5 if lo > 1 else 0.5, hi + 0.5, n) - 0.5) + 0.5)
    return edges.astype(np.float64)
