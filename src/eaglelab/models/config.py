"""Model configuration: one small frozen dataclass for every regime (brief section 2).

Shapes: the prompt Z has T = d + d' rows (tokens) and W = n + n' columns.  The four
regimes share the layer and differ only in the widths and supports of the per-head
weights:

| regime          | Wq, Wk, Wv (per head: rows x width) | Wp (per head)   | extra               |
|-----------------|-------------------------------------|-----------------|---------------------|
| unconstrained   | W x W                               | W x W           |                     |
| compute-limited | W x r (Wq, Wk); W x (r + n') (Wv)   | W x (r + n')    |                     |
| distributed     | local: rows J_mu + the n' shared    | W x (n/M + n')  | heads = per machine |
|                 | columns (zero elsewhere), width     | (writes         |                     |
|                 | n/M + n'; mu = the head's machine   | anywhere)       |                     |
| estimation      | W x W                               | W x W           | two query biases    |

In the distributed regime a head reads - through its query, key AND value - only its own
machine's columns J_mu and the shared columns of C and D; its projection may write every
column.  So a head's output depends on no other machine's data (tested).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["REGIMES", "ModelConfig"]

REGIMES = ("unconstrained", "compute-limited", "distributed", "estimation")
SUPPORTS = ("full", "sparse", "diag", "gdpp")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a linear-attention transformer for masked-block completion.

    Parameters
    ----------
    regime : one of REGIMES.
    n, d, n_prime, d_prime : block sizes (A is d x n, C is d x n', B is d' x n).
    layers : number of layers L (paper: 4).
    heads : heads per layer; in the distributed regime heads per *machine* (the layer then
        has machines * heads heads, machine-major).
    r : query/key width of the compute-limited regime (must be < n); ignored elsewhere.
    machines : number M of machines of the distributed regime (must divide n); ignored
        elsewhere.
    init_std : standard deviation of the i.i.d. Gaussian initialisation of every factor.
    normalise : per-prompt normalisation (ours, `tasks.scale`; the paper has none): "none",
        or "frobenius" / "power" - every prompt is scaled so that that estimate of ||A||
        equals `norm_target` before the layers, and the prediction is scaled back.
    norm_target : the estimate a normalised prompt is brought to (e.g.
        `tasks.scale.training_median(task, method)` for a model trained without it).
    support : "full" (every weight free), or "sparse" (unconstrained regime only; Ahn et
        al.'s sparse form, related brief section 1): W_QK lives on the (x, x) block - the
        first n rows and columns - and W_VP on the (y, y) block - the last n' - so a layer
        moves only the y entries, by a learned preconditioned-GD step; "diag" (Vladymyrov
        et al.'s DIAG, related brief section 3): four scalars per head, W_QK =
        diag(q_x I_n, q_y I_n') and W_VP = diag(p_x I_n, p_y I_n'); "gdpp" (their GD++):
        DIAG with q_y = 0, so the x's get GD++'s input transform and the y's a GD step.
    tied : one set of weights applied in every layer (von Oswald et al.'s recurrent,
        weight-shared model, related brief section 2); unconstrained regime only.  The
        gradient of the shared weights is the sum over the layers that use them.
    """

    regime: str = "unconstrained"
    n: int = 18
    d: int = 18
    n_prime: int = 2
    d_prime: int = 2
    layers: int = 4
    heads: int = 1
    r: int = 5
    machines: int = 3
    init_std: float = 0.02
    normalise: str = "none"
    norm_target: float = 1.0
    support: str = "full"
    tied: bool = False

    def __post_init__(self) -> None:
        if self.regime not in REGIMES:
            raise ValueError(f"regime={self.regime!r} is not known; use one of "
                             f"{', '.join(REGIMES)}")
        for name in ("n", "d", "n_prime", "d_prime", "layers", "heads", "r", "machines"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"model {name} must be a positive integer, got {value!r}")
        if self.regime == "compute-limited" and self.r >= self.n:
            raise ValueError(f"compute-limited regime needs r < n, got r={self.r} and "
                             f"n={self.n}; choose a smaller r")
        if self.regime == "distributed" and self.n % self.machines != 0:
            raise ValueError(f"distributed regime needs the number of machines M to divide n, "
                             f"got M={self.machines} and n={self.n}; choose M among "
                             f"{[m for m in range(1, self.n + 1) if self.n % m == 0]}")
        if not (self.init_std > 0 and self.init_std < float("inf")):
            raise ValueError(f"init_std must be a positive finite number, got {self.init_std}")
        if self.support not in SUPPORTS:
            raise ValueError(f"model.support={self.support!r}; use one of {SUPPORTS}")
        if self.support != "full" and self.regime != "unconstrained":
            raise ValueError(f"model.support={self.support!r} is defined for the unconstrained "
                             f"regime only, not {self.regime!r}")
        if not isinstance(self.tied, bool):
            raise ValueError(f"model.tied must be true or false, got {self.tied!r}")
        if self.tied and self.regime != "unconstrained":
            raise ValueError(f"model.tied (weights shared by every layer) is defined for the "
                             f"unconstrained regime only, not {self.regime!r}")
        from eaglelab.tasks.scale import METHODS

        if self.normalise not in METHODS:
            raise ValueError(f"normalise={self.normalise!r} is not known; use one of {METHODS}")
        if not (self.norm_target > 0 and self.norm_target < float("inf")):
            raise ValueError(f"norm_target must be a positive finite number, got "
                             f"{self.norm_target}")

    # derived sizes -------------------------------------------------------------------
    @property
    def tokens(self) -> int:
        """T = d + d' (tokens are the rows of Z)."""
        return self.d + self.d_prime

    @property
    def stored_layers(self) -> int:
        """Layers with their own stored weights: 1 when `tied`, else `layers`."""
        return 1 if self.tied else self.layers

    @property
    def width(self) -> int:
        """W = n + n' (the width of a token)."""
        return self.n + self.n_prime

    @property
    def total_heads(self) -> int:
        """Heads per layer (machines * heads in the distributed regime)."""
        return self.heads * self.machines if self.regime == "distributed" else self.heads

    @property
    def local_width(self) -> int:
        """Columns a distributed head reads: its machine's n/M plus the n' shared ones."""
        return self.n // self.machines + self.n_prime

    @property
    def read_rows(self) -> int:
        """Rows of the stored Wq, Wk and Wv factors (compact `local_width` rows in the
        distributed regime, embedded on the head's local columns; W elsewhere)."""
        return self.local_width if self.regime == "distributed" else self.width

    @property
    def qk_width(self) -> int:
        """Query/key width per head."""
        if self.regime == "compute-limited":
            return self.r
        if self.regime == "distributed":
            return self.local_width
        return self.width

    @property
    def vp_width(self) -> int:
        """Value/projection width per head (a distributed head's value has local rows, so a
        wider factor would add no rank)."""
        if self.regime == "compute-limited":
            return self.r + self.n_prime
        if self.regime == "distributed":
            return self.local_width
        return self.width

    def to_dict(self) -> dict:
        return asdict(self)

    def with_heads(self, heads: int) -> ModelConfig:
        return ModelConfig(**{**self.to_dict(), "heads": heads})

    def with_normalisation(self, method: str, target: float = 1.0) -> ModelConfig:
        return ModelConfig(**{**self.to_dict(), "normalise": method, "norm_target": target})
