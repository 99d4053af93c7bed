"""The quantile bands of the figures and the site: the vectorized NaN-quantile equals
numpy's, and a band over seeds is the median / 20–80 % of the seeds' step curves."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from blobench.reporting.plots import band_over_seeds, nanquantile_columns


@pytest.mark.parametrize("shape", [(1, 50), (3, 60), (5, 40), (2, 7)])
def test_nanquantile_columns_equals_numpy(shape):
    rng = np.random.default_rng(0)
    a = rng.normal(size=shape)
    a[rng.random(shape) < 0.3] = np.nan
    a[:, 0] = np.nan  # a column without any value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for q in (0.2, 0.5, 0.8):
            np.testing.assert_allclose(nanquantile_columns(a, q), np.nanquantile(a, q, 0),
                                       rtol=1e-12, atol=1e-15)


def test_band_over_seeds_by_hand():
    # three seeds, evaluated at t = 0 and 1: values 1, 2, 4 then 0, 1, 3
    rows = [{"label": "a", "seed": s, "seconds": t, "m": v}
            for s, (v0, v1) in enumerate([(1, 0), (2, 1), (4, 3)]) for t, v in ((0.0, v0),
                                                                                  (1.0, v1))]
    band = band_over_seeds(pd.DataFrame(rows), "m")["a"]
    assert band["median"].iloc[0] == 2 and band["median"].iloc[-1] == 1
    assert band["low"].iloc[0] == pytest.approx(1 + 0.4 * 1)  # 20 %: between 1 and 2
    assert band["high"].iloc[-1] == pytest.approx(1 + 0.6 * 2)  # 80 %: between 1 and 3
