"""Censored medians of counts to a target: a miss (None) ranks above every reached value."""

import numpy as np
import pytest

from eaglelab.experiments import _common as cm


def test_all_reached_matches_numpy_on_fresh_draws():
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 10, 11):
        x = rng.integers(1, 500, n).astype(float).tolist()
        assert cm.censored_median(x) == pytest.approx(np.median(x))
        got = cm.censored_quantiles(x, (0.1, 0.25, 0.75))
        assert got == pytest.approx(np.quantile(x, (0.1, 0.25, 0.75)).tolist())


def test_misses_rank_last_instead_of_being_dropped():
    # dropping the misses would give median 2 (of 1, 2, 3); with them the median is 3
    assert cm.median([1, 2, 3, None, None]) == 2
    assert cm.censored_median([1, 2, 3, None, None]) == 3
    # the median problem missed: no median count exists within the budget
    assert cm.censored_median([1, None, None]) is None
    assert cm.censored_median([1, 2, None, None]) is None      # interpolates into a miss
    assert cm.censored_median([float("nan"), 4, 5]) == 5        # NaN is a miss too
    assert cm.censored_quantiles([1, 2, 3, None], (0.25, 0.75)) == [1.75, None]
    assert cm.censored_median([]) is None
