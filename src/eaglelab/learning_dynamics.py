"""Exact learning dynamics of one linear-attention layer on in-context regression (Mainali &
Teixeira, arXiv 2504.12916; related brief section 6), derived here and checked against
simulated training.

Model (our reading of their one-layer, one-head f(Z) = Z + W_P (Z Z^T / N) W_Q Z, reduced
to the entries that reach the prediction): y_hat = x_q^T Gamma h with h = X^T y / N the
context moment and Gamma = P Q a product of two d x d factors (value-projection and
query-key).  Task: x ~ N(0, Sigma) (context and query), Sigma = U diag(s) U^T, w ~ N(0, I),
y = <w, x>; loss 1/2 squared error.

Population loss.  With E[h h^T | w] over the Wishart moment, E[Sigma_hat^2] =
((N + 1) / N) Sigma^2 + (tr Sigma / N) Sigma, so for Gamma = U diag(a) U^T

    L(a) = 1/2 sum_alpha s_alpha (1 - 2 a_alpha s_alpha + a_alpha^2 s_alpha s_inf,alpha),
    s_inf,alpha = ((N + 1) s_alpha + tr Sigma) / N,

every mode alpha on its own, minimised at a_alpha = a_inf = 1 / s_inf (the fixed point
Gamma* = [((N + 1)/N) Sigma + (tr Sigma / N) I]^-1, their fixed point and Ahn et al.'s
Theorem 1).  Gradient flow on (P, Q) keeps P^T P - Q Q^T constant (per mode p^2 - q^2);
from the balanced start P = Q = sqrt(a_0) I each mode's a = p q obeys the logistic
equation

    da/dt = 2 lr s_alpha^2 a (1 - s_inf a),   a(t) = a_inf / (1 + (a_inf / a_0 - 1) e^{-t/tau}),

t in steps of plain GD with learning rate lr, tau_alpha = 1 / (2 lr s_alpha^2), half-way
(escape) time tau_alpha log(a_inf / a_0 - 1): modes are learned in the order of the
covariance eigenvalues (staged learning).  Against the brief's tau = 1 / (lr P s^2) with
escape time (tau / 2) log(1 / (s_inf a_0)) (P is not defined there): the escape times agree
for P = 1 (the brief's curve then runs at e^{-2t/tau}, our tau_alpha being its tau / 2);
the dynamics experiment's off-rate controls (half and twice our rate) show simulated
training rules the other readings out.
Assumed: P and Q full d x d (every mode free) and the balanced start; discrete GD follows
the flow up to O(lr s^2 s_inf)per step.

`simulate` trains (P, Q) by plain SGD on sampled prompts (or by exact population GD) in
float64 and records every mode's a_alpha = u_alpha^T P Q u_alpha and the drift of the
conserved P^T P - Q Q^T.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["mode_constants", "closed_form", "escape_steps", "population_loss", "simulate",
           "Trajectory"]


def _spectrum(s) -> np.ndarray:
    s = np.asarray(s, dtype=np.float64)
    if s.ndim != 1 or s.size == 0 or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"the covariance spectrum must be a non-empty list of positive "
                         f"numbers, got {s!r}")
    return s


def mode_constants(spectrum, N: int) -> dict[str, np.ndarray]:
    """Per mode: s, s_inf = ((N + 1) s + tr S) / N and the fixed point a_inf = 1 / s_inf."""
    s = _spectrum(spectrum)
    if not isinstance(N, int) or N < 1:
        raise ValueError(f"N (context tokens) must be a positive integer, got {N!r}")
    s_inf = ((N + 1) * s + s.sum()) / N
    return {"s": s, "s_inf": s_inf, "a_inf": 1.0 / s_inf}


def population_loss(a, spectrum, N: int) -> float:
    """L(a) of the module docstring for Gamma = U diag(a) U^T."""
    c = mode_constants(spectrum, N)
    a = np.asarray(a, dtype=np.float64)
    s = c["s"]
    return float(0.5 * np.sum(s * (1 - 2 * a * s + a * a * s * c["s_inf"])))


def closed_form(spectrum, N: int, lr: float, a0: float, steps) -> np.ndarray:
    """a_alpha(t) (len(steps), d) of the logistic solution at the given step counts."""
    c = mode_constants(spectrum, N)
    t = np.asarray(steps, dtype=np.float64)[:, None]
    rate = 2.0 * lr * c["s"] ** 2
    K = c["a_inf"]
    return K / (1.0 + (K / a0 - 1.0) * np.exp(-rate * t))


def escape_steps(spectrum, N: int, lr: float, a0: float) -> np.ndarray:
    """Steps until each mode's a reaches half its fixed point: tau log(a_inf / a0 - 1)."""
    c = mode_constants(spectrum, N)
    tau = 1.0 / (2.0 * lr * c["s"] ** 2)
    return tau * np.log(c["a_inf"] / a0 - 1.0)


@dataclass
class Trajectory:
    """steps (R,), modes (R, d) = u_alpha^T P Q u_alpha, balance_drift (R,) =
    ||(P^T P - Q Q^T) - its start||_F, loss (R,) = the population loss of P Q."""

    steps: np.ndarray
    modes: np.ndarray
    balance_drift: np.ndarray
    loss: np.ndarray


def simulate(spectrum, N: int, lr: float, a0: float, steps: int, *, batch: int = 2048,
             record_every: int = 10, seed: int = 0, exact: bool = False,
             rotate: bool = True) -> Trajectory:
    """Train Gamma = P Q from P = Q = sqrt(a0) I by plain SGD on `batch` fresh prompts per
    step (exact=True: GD on the population loss), float64; Sigma = U diag(spectrum) U^T
    with U a Haar rotation from `seed` (rotate=False: U = I)."""
    from eaglelab.tasks.haar import haar

    c = mode_constants(spectrum, N)
    s = c["s"]
    d = s.size
    rng = np.random.default_rng(seed)
    U = haar(rng, d, d) if rotate else np.eye(d)
    Sigma = U @ np.diag(s) @ U.T
    Ut = torch.as_tensor(U)
    S = torch.as_tensor(Sigma)
    M2 = (N + 1) / N * S @ S + float(np.trace(Sigma)) / N * S      # E[Sigma_hat^2]
    L_chol = torch.as_tensor(np.linalg.cholesky(Sigma))
    P = (np.sqrt(a0) * torch.eye(d, dtype=torch.float64)).requires_grad_(True)
    Q = (np.sqrt(a0) * torch.eye(d, dtype=torch.float64)).requires_grad_(True)
    gen = torch.Generator().manual_seed(seed)
    start = (P.T @ P - Q @ Q.T).detach().clone()
    rec_steps, modes, drift, losses = [], [], [], []

    def pop_loss(G):
        return 0.5 * (torch.trace(S) - 2 * torch.trace(S @ G @ S)
                      + torch.trace(G @ M2 @ G.T @ S))

    for step in range(steps + 1):
        if step % record_every == 0 or step == steps:
            with torch.no_grad():
                G = P @ Q
                rec_steps.append(step)
                modes.append(torch.einsum("ia,ij,ja->a", Ut, G, Ut).numpy())
                drift.append(float(torch.linalg.matrix_norm(P.T @ P - Q @ Q.T - start)))
                losses.append(float(pop_loss(G)))
        if step == steps:
            break
        if exact:
            loss = pop_loss(P @ Q)
        else:
            x = torch.randn(batch, N + 1, d, generator=gen, dtype=torch.float64) @ L_chol.T
            w = torch.randn(batch, d, 1, generator=gen, dtype=torch.float64)
            y = (x @ w)[..., 0]                                          # (batch, N + 1)
            h = (y[:, None, :N] @ x[:, :N])[:, 0] / N                    # (batch, d)
            pred = ((x[:, N] @ P) @ Q * h).sum(dim=1)
            loss = 0.5 * (pred - y[:, N]).square().mean()
        gP, gQ = torch.autograd.grad(loss, (P, Q))
        with torch.no_grad():
            P -= lr * gP
            Q -= lr * gQ
    return Trajectory(np.asarray(rec_steps), np.asarray(modes), np.asarray(drift),
                      np.asarray(losses))
