"""Extraction on genuinely trained models (slow: about 10 minutes on 2 cores).

Run with `pytest -m slow tests/test_trained_extraction.py`.  Each regime is trained with the
paper's recipe for 10,000 steps and one seed (the demo's budget) and extracted.  The checks
are what we measured to hold at this budget (docs/demo.md, docs/reproduction/fidelity):
the unconstrained extraction is below the model's own error (the relative criterion; the
paper's 6e-4 bound is not asserted at half its budget); the compute-limited model
learns a rank-r sketch indistinguishable from a random S S^T and a value map of its own, and
the extraction that reads that map (with the sketch's learned eigenvalues) meets the paper's
bound and the relative criterion (measured: 8.9e-5 .. 1.6e-4 against a test MSE of 1.5e-2, which
is above the verdict's learned gate of 1e-2) and closer
to the model than the paper's form (S S^T on the value side); the distributed model (local
reads) is extracted as the paper's local update within 2x of the model's error, and its
off-machine writes are measured.
"""

from __future__ import annotations

import numpy as np
import pytest

from eaglelab.extract import extract
from eaglelab.train import cli_train, load_run

STEPS = 10_000


@pytest.mark.slow
@pytest.mark.timeout(1800)   # training alone takes 3-6 minutes per regime on 2 cores
@pytest.mark.parametrize("regime", ["unconstrained", "compute-limited", "distributed"])
def test_trained_model_extraction(regime, tmp_path):
    cli_train(regime, 1, STEPS, tmp_path / regime, quiet=True)
    run = load_run(tmp_path / regime)
    ex = extract(run.model, run.config.task, val_size=1024)
    s = ex.summary()
    # the model learned to solve: far below predicting zero (the layer-0 read-out)
    assert s["mse_median"] < 0.2 * ex.seeds[0].layers_model["mse"][0]
    assert 0.3 < s["eta"] < 3, s["eta"]
    assert s["mse"] <= 0.5 * s["zero_mse"], (s["mse"], s["zero_mse"])
    assert s["learned"] == (s["mse"] <= 1e-2)    # the gate also asks for the paper's accuracy
    if regime == "unconstrained":    # at half the paper's budget: below its own error
        assert s["below_mse"], (s["fidelity"], s["mse"])
        assert 0.5 < s["gamma_inner"] < 10, s["gamma_inner"]
    if regime == "compute-limited":
        seed = ex.seeds[0]
        assert all(rk == [5] for rk in seed.ranks), seed.ranks
        assert np.mean([layer["p_entries"] > 0.05 for layer in seed.sketch]) >= 0.5
        # within the bound and below its error; 'faithful' also needs MSE <= 1e-2, which one
        # rank-5 head at 10k steps does not reach (measured 1.5e-2)
        assert s["meets_paper_bound"] and s["below_mse"], (s["fidelity"], s["mse"])
        assert np.all(np.asarray(s["fidelity_median"]) < s["mse_median"])
        assert np.all(np.asarray(s["fidelity_median"])
                      <= np.asarray(s["fidelity_paper_median"]))
    if regime == "distributed":
        assert len(s["cross_write"]) == 4 and "fidelity_paper" not in s
        assert max(s["fidelity"]) < 2 * s["mse"], (s["fidelity"], s["mse"])
