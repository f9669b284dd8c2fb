"""One-layer learning dynamics (Mainali & Teixeira; related brief section 6): the closed-form
per-mode logistic curves against simulated training, the fixed point against Ahn et al.'s
Theorem 1, the population loss against Monte Carlo."""

from __future__ import annotations

import numpy as np

from eaglelab import learning_dynamics as ld

SPEC = [1.0, 0.5, 0.25]
N = 20


def test_fixed_point_is_the_theorem_1_preconditioner_and_minimises_the_loss():
    from eaglelab.solvers.icl_baselines import optimal_one_step_preconditioner

    c = ld.mode_constants(SPEC, N)
    thm1 = optimal_one_step_preconditioner(np.diag(SPEC), N)          # w ~ N(0, I)
    assert np.allclose(np.diag(thm1), c["a_inf"], rtol=1e-13)
    best = ld.population_loss(c["a_inf"], SPEC, N)
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert ld.population_loss(c["a_inf"] * (1 + 0.1 * rng.standard_normal(3)), SPEC,
                                  N) > best


def test_population_loss_is_the_monte_carlo_loss():
    """The moment formula against sampled prompts (x ~ N(0, diag(SPEC)), w ~ N(0, I)): the
    loss of Gamma = diag(a) at a = a_inf / 2 within 3 standard errors."""
    rng = np.random.default_rng(1)
    a = ld.mode_constants(SPEC, N)["a_inf"] / 2
    B = 200_000
    x = rng.standard_normal((B, N + 1, 3)) * np.sqrt(SPEC)
    w = rng.standard_normal((B, 3))
    y = np.einsum("btd,bd->bt", x, w)
    h = np.einsum("bnd,bn->bd", x[:, :N], y[:, :N]) / N
    per = 0.5 * (np.einsum("bd,d,bd->b", x[:, N], a, h) - y[:, N]) ** 2
    se = per.std() / np.sqrt(B)
    assert abs(per.mean() - ld.population_loss(a, SPEC, N)) < 3 * se


def test_gradient_descent_follows_the_closed_form_mode_by_mode():
    """Exact population GD on (P, Q) from the balanced start, Sigma rotated: every mode's
    a_alpha(t) within 2% of a_inf of the logistic curve, the balance P^T P - Q Q^T kept, and
    the modes learned in the order of the eigenvalues (staged learning)."""
    lr, a0 = 0.02, 1e-3
    esc = ld.escape_steps(SPEC, N, lr, a0)
    assert np.all(np.diff(esc) > 0)                        # larger eigenvalue: sooner
    tr = ld.simulate(SPEC, N, lr, a0, int(2.2 * esc.max()), exact=True, record_every=25)
    cf = ld.closed_form(SPEC, N, lr, a0, tr.steps)
    K = ld.mode_constants(SPEC, N)["a_inf"]
    assert np.all(np.abs(tr.modes - cf).max(axis=0) < 0.02 * K)
    assert tr.balance_drift.max() < 1e-10
    half = [tr.steps[np.argmax(tr.modes[:, a] > K[a] / 2)] for a in range(3)]
    assert half[0] < half[1] < half[2]
    assert np.allclose(half, esc, rtol=0.05, atol=25)


def test_sgd_follows_the_closed_form():
    """Plain SGD on sampled prompts (batch 1,024): the two modes within 5% of a_inf of the
    closed form, the balance kept up to the gradient noise."""
    spec, lr, a0 = [1.0, 0.5], 0.05, 1e-3
    esc = ld.escape_steps(spec, N, lr, a0)
    tr = ld.simulate(spec, N, lr, a0, int(2.2 * esc.max()), batch=1024, record_every=20,
                     seed=3)
    cf = ld.closed_form(spec, N, lr, a0, tr.steps)
    K = ld.mode_constants(spec, N)["a_inf"]
    assert np.all(np.abs(tr.modes - cf).max(axis=0) < 0.05 * K)
    assert tr.balance_drift.max() < 0.05
    assert tr.loss[-1] < 1.01 * ld.population_loss(K, spec, N)
