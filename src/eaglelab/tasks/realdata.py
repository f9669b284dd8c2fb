"""Completion problems from real matrices (the paper's SuiteSparse experiment).

Construction (`matrix_task`), for a p x q matrix M of numerical rank r:

1. r is the number of singular values of M above ``rtol * sigma_max`` (default
   ``rtol = max(p, q) * eps``, numpy's ``matrix_rank`` convention), or the given `rank`.
2. A column-pivoted QR of M picks r independent columns ``cols`` (the first r pivots).
3. A column-pivoted QR of ``M[:, cols].T`` picks r independent rows ``rows``.
4. A = M[rows, cols] is r x r and full rank; B = M[e, cols] for one further row e not in
   ``rows``; C = M[rows, rest] with ``rest`` the columns not in ``cols`` (ascending);
   D = M[e, rest].  Row e is `extra_row` if given, otherwise the spare row of largest
   Euclidean norm among those whose B and D parts are both nonzero (a zero B or D makes
   the task trivial; in Maragal_4 the spare row of largest norm has D = 0), falling back
   to the spare row of largest norm.

If M has exact rank r every row of M is a combination of the selected rows, so
D = B A^+ C exactly (the noiseless case); in floating point the match is up to rounding.

No spare row or column.  When r == p (full row rank, e.g. lp_afiro) no row is left for B,
and when r == q (full column rank, e.g. ash85) no column is left for C.  An empty block would
be a degenerate task (the solvers reject empty blocks), so by default `matrix_task` raises
ValueError.  With ``on_full_rank="shrink"`` it instead uses r' = min(r, p - 1, q - 1) in
steps 2-4: A is then a full-rank r' x r' block made of the r' most independent rows and
columns (in pivoted-QR order), and B, C, D come from the rows and columns left over.  A
stays square and well defined, but because M has rank r > r' the problem is no longer
noiseless: D differs from the Nystrom completion B A^+ C, which is then an extrapolation
(as for kernel tasks).  ``meta["shrunk"]`` records whether this happened.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import torch

from eaglelab.tasks._checks import check_choice, check_float, check_int
from eaglelab.tasks.blocks import BlockProblem

__all__ = ["load_matrix", "load_problem", "matrix_task", "save_problem"]


def _dense(M: Any) -> np.ndarray:
    if isinstance(M, torch.Tensor):
        M = M.detach().cpu().numpy()
    elif sp.issparse(M):
        M = M.toarray()
    M = np.asarray(M)
    if M.dtype.kind not in "fiub":
        raise ValueError(f"M must be a real numeric matrix, got dtype {M.dtype}")
    M = M.astype(np.float64)
    if M.ndim != 2:
        raise ValueError(f"M must be 2-D, got shape {M.shape}")
    if M.shape[0] < 2 or M.shape[1] < 2:
        raise ValueError(f"M must have at least 2 rows and 2 columns, got shape {M.shape}")
    if not np.all(np.isfinite(M)):
        raise ValueError("M must be finite (no NaN or inf entries)")
    return M


def _numrank(M: np.ndarray, rtol: float) -> int:
    """Number of singular values above rtol * sigma_max (0 for a zero matrix)."""
    s = np.linalg.svd(M, compute_uv=False)
    return int(np.count_nonzero(s > rtol * s[0])) if s.size and s[0] > 0 else 0


def _pivots(M: np.ndarray) -> np.ndarray:
    """Column order of a column-pivoted QR of M."""
    return scipy.linalg.qr(M, mode="r", pivoting=True)[1]


def matrix_task(
    M: Any,
    *,
    rank: int | None = None,
    rtol: float | None = None,
    extra_row: int | None = None,
    on_full_rank: Literal["raise", "shrink"] = "raise",
) -> BlockProblem:
    """Build a completion problem from a real matrix by rank-revealing row/column selection.

    Parameters
    ----------
    M : array_like, scipy.sparse matrix or torch.Tensor
        The p x q matrix (densified; meant for matrices up to a few thousand rows/columns).
    rank : int, optional
        Rank r to use instead of the numerical rank, in [1, min(p, q)].
    rtol : float, optional
        Relative tolerance on singular values defining the numerical rank (default
        ``max(p, q) * eps``).  Ignored when `rank` is given.
    extra_row : int, optional
        Index of the row of M used for B and D.  It is excluded from the row selection;
        ValueError if A would then lose rank.  Default: the spare row of largest norm
        whose B and D parts are nonzero (see the module docstring).
    on_full_rank : {"raise", "shrink"}
        What to do when r == p or r == q (no spare row or column); see the module
        docstring.

    Returns
    -------
    BlockProblem
        A (r x r), B (1 x r), C (r x (q - r)), D (1 x (q - r)), with r replaced by the
        shrunk r' if applicable.  ``meta`` records ``shape``, ``rank`` (of M), ``rank_used``,
        ``rtol``, ``shrunk``, ``rows``, ``cols``, ``rest_cols``, ``extra_row``,
        ``row_permutation`` and ``col_permutation`` (M[row_permutation][:, col_permutation]
        has A in its top-left corner, B's row right below it and C to its right), ``cond_A``
        (sigma_max / sigma_min of A) and ``A_rank`` (numerical rank of A).

    Raises
    ------
    ValueError
        For malformed M, out-of-range `rank`/`rtol`/`extra_row`, a numerically zero M, or
        full row/column rank with ``on_full_rank="raise"``.
    """
    Md = _dense(M)
    p, q = Md.shape
    on_full_rank = check_choice("on_full_rank", on_full_rank, ("raise", "shrink"))
    eps_tol = max(p, q) * np.finfo(np.float64).eps
    if rtol is not None:
        rtol = check_float("rtol", rtol, low=0.0, high=1.0, low_open=True, high_open=True)
    if rank is None:
        s = np.linalg.svd(Md, compute_uv=False)
        tol = (eps_tol if rtol is None else rtol) * s[0]
        r = int(np.count_nonzero(s > tol))
        if r == 0:
            raise ValueError("M is numerically zero (rank 0); nothing to complete")
    else:
        r = check_int("rank", rank, 1, min(p, q))
    if r >= p or r >= q:
        if on_full_rank == "raise":
            which = "row" if r >= p else "column"
            block = "B and D" if r >= p else "C and D"
            raise ValueError(
                f"M ({p} x {q}) has full {which} rank (rank {r}), so no spare {which} is "
                f"left for {block}; pass on_full_rank='shrink' (`eaglelab solve "
                f"--on-full-rank shrink`; uses a rank-{min(p, q) - 1} block A, the problem is "
                f"then not noiseless) or rank < {r}.  The transpose does not help: it has the "
                "spare rows but no spare column"
            )
    r_used = min(r, p - 1, q - 1)
    shrunk = r_used < r

    cols = _pivots(Md)[:r_used]
    rest_cols = np.setdiff1d(np.arange(q), cols)
    candidates = np.arange(p)
    if extra_row is not None:
        extra_row = check_int("extra_row", extra_row, 0, p - 1)
        candidates = np.delete(candidates, extra_row)
        if _numrank(Md[candidates][:, cols], eps_tol) < _numrank(Md[:, cols], eps_tol):
            raise ValueError(
                f"extra_row={extra_row} is needed to span the row space of the "
                "selected columns; choose another row (or leave it None)"
            )
    rows = candidates[_pivots(Md[candidates][:, cols].T)[:r_used]]
    spare = np.setdiff1d(np.arange(p), rows)
    if extra_row is None:
        norms = np.linalg.norm(Md[spare], axis=1)
        both = (np.abs(Md[np.ix_(spare, cols)]).max(axis=1) > 0) & (
            np.abs(Md[np.ix_(spare, rest_cols)]).max(axis=1) > 0
        )
        extra_row = int(spare[np.argmax(np.where(both, norms, -1.0) if both.any() else norms)])

    A = Md[np.ix_(rows, cols)]
    B = Md[np.ix_([extra_row], cols)]
    C = Md[np.ix_(rows, rest_cols)]
    D = Md[np.ix_([extra_row], rest_cols)]
    sA = np.linalg.svd(A, compute_uv=False)
    A_rank = _numrank(A, eps_tol)
    cond_A = float(sA[0] / sA[-1]) if sA[-1] > 0 else float("inf")
    others = np.setdiff1d(spare, [extra_row])
    meta = {
        "generator": "matrix",
        "shape": (p, q),
        "rank": r,
        "rank_used": r_used,
        "rtol": eps_tol if rtol is None else rtol,
        "shrunk": shrunk,
        "rows": rows,
        "cols": cols,
        "rest_cols": rest_cols,
        "extra_row": extra_row,
        "row_permutation": np.concatenate([rows, [extra_row], others]).astype(np.intp),
        "col_permutation": np.concatenate([cols, rest_cols]).astype(np.intp),
        "cond_A": cond_A,
        "A_rank": A_rank,
    }
    return BlockProblem(A=A, B=B, C=C, D=D, meta=meta)


def _open_npz(path: Path):
    """np.load of an .npz archive, with errors that say what is wrong with the file (numpy
    answers a directory with IsADirectoryError and a non-zip file by suggesting
    allow_pickle, which would be unsafe and wrong)."""
    if path.is_dir():
        raise ValueError(f"path {path} is a directory, not an .npz archive")
    if not path.exists():
        raise ValueError(f"path {path} does not exist")
    import zipfile

    if not zipfile.is_zipfile(path):
        raise ValueError(f"path {path} is not an .npz archive (not a zip file); write it with "
                         "numpy.savez or eaglelab.tasks.save_problem")
    return np.load(path, allow_pickle=False)


def _real_matrix(path: Path, M):
    """M unchanged if real; ValueError for a complex matrix (a cast would drop its imaginary
    part silently)."""
    if np.iscomplexobj(M.data if sp.issparse(M) else M):
        raise ValueError(f"path {path}: the matrix is complex ({M.dtype}); the solvers are "
                         "real-valued")
    return M


MAX_READ_BYTES = 8 * 2**30     # what a Matrix Market header may ask us to allocate


def _check_header_size(path: Path, header) -> None:
    """Refuse a file whose header asks for more than MAX_READ_BYTES before reading it (an
    "array" header of 200000 x 200000 would allocate 320 GB; a truncated or hostile file
    must not take the machine's memory)."""
    rows, cols = header.shape
    entries = rows * cols if header.format == "array" else header.nnz
    per = 16 if header.field == "complex" else 8
    need = entries * (per if header.format == "array" else per + 16)   # value + 2 indices
    if need > MAX_READ_BYTES:
        raise ValueError(f"{path}: its header declares a {rows} x {cols} {header.format} "
                         f"matrix ({entries} stored entries, about {need / 2**30:.0f} GiB); "
                         f"the reader's limit is {MAX_READ_BYTES / 2**30:.0f} GiB "
                         "(tasks.realdata.MAX_READ_BYTES) - check the file")


def load_matrix(path: str | os.PathLike) -> np.ndarray | sp.csr_array:
    """Read a matrix from disk.

    Parameters
    ----------
    path : str or path-like
        ``.mtx`` / ``.mtx.gz`` (Matrix Market; read with fast_matrix_market when installed,
        otherwise ``scipy.io.mmread``), ``.npy`` (a dense array) or ``.npz`` (either a
        ``scipy.sparse.save_npz`` file or an archive holding one array named ``M``).
        For ``.npz`` archives holding the blocks A, B, C use `load_problem`.

    Returns
    -------
    ndarray or scipy.sparse.csr_array
        Sparse (CSR) for coordinate-format files, dense otherwise.
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".mtx", ".mtx.gz")):
        try:
            import fast_matrix_market as fmm

            _check_header_size(path, fmm.read_header(str(path)))
            M = fmm.mmread(str(path))
        except ImportError:  # pragma: no cover - fast_matrix_market is a dependency
            import scipy.io

            M = scipy.io.mmread(str(path))
        M = sp.csr_array(M) if sp.issparse(M) else np.asarray(M)
        return _real_matrix(path, M)
    if name.endswith(".npy"):
        return _real_matrix(path, np.load(path, allow_pickle=False))
    if name.endswith(".npz"):
        with _open_npz(path) as f:
            keys = set(f.files)
            if "M" in keys:
                return _real_matrix(path, np.array(f["M"]))
        if {"data", "shape", "format"} <= keys:
            return _real_matrix(path, sp.csr_array(sp.load_npz(path)))
        if {"A", "B", "C"} <= keys:
            raise ValueError(f"path {path} holds blocks A, B, C; read it with load_problem")
        raise ValueError(
            f"path {path}: .npz must hold an array 'M' or a scipy.sparse matrix, "
            f"found {sorted(keys)}"
        )
    raise ValueError(f"path {path}: unsupported suffix; use .mtx, .mtx.gz, .npy or .npz")


def _real(path: Path, name: str, a: np.ndarray) -> np.ndarray:
    """Block `name` of the archive as float64; ValueError for a complex or non-numeric one
    (a cast would silently drop the imaginary part)."""
    if np.iscomplexobj(a) or a.dtype.kind not in "fiub":
        raise ValueError(f"path {path}: block {name} has dtype {a.dtype}; the solvers are "
                         "real-valued (split a complex problem into real and imaginary parts)")
    return np.asarray(a, dtype=np.float64)


def load_problem(path: str | os.PathLike, **matrix_task_kwargs: Any) -> BlockProblem:
    """Read a completion problem from disk.

    Parameters
    ----------
    path : str or path-like
        An ``.npz`` archive with arrays ``A``, ``B``, ``C`` (and optionally ``D``), as
        written by `save_problem`; or any matrix file accepted by `load_matrix`, which is
        then turned into a problem by `matrix_task`.
    **matrix_task_kwargs
        Passed to `matrix_task` (``rank``, ``rtol``, ``extra_row``, ``on_full_rank``).

    Returns
    -------
    BlockProblem
        ``meta["path"]`` records the file.
    """
    path = Path(path)
    if path.name.lower().endswith(".npz"):
        with _open_npz(path) as f:
            if {"A", "B", "C"} <= set(f.files):
                if matrix_task_kwargs:
                    raise ValueError("matrix_task_kwargs do not apply to a block archive")
                blocks = {k: _real(path, k, f[k]) for k in ("A", "B", "C", "D")
                          if k in f.files}
                _check_blocks(path, blocks)
                return BlockProblem(**blocks, meta={"generator": "file", "path": str(path)})
    problem = matrix_task(load_matrix(path), **matrix_task_kwargs)
    problem.meta["path"] = str(path)
    return problem


def _check_blocks(path: Path, blocks: dict[str, np.ndarray]) -> None:
    A, B, C = blocks["A"], blocks["B"], blocks["C"]
    ok = A.ndim == B.ndim == C.ndim == 2 and B.shape[1] == A.shape[1] and C.shape[0] == A.shape[0]
    if ok and "D" in blocks:
        ok = blocks["D"].shape == (B.shape[0], C.shape[1])
    if not ok:
        shapes = {k: v.shape for k, v in blocks.items()}
        raise ValueError(f"path {path}: inconsistent block shapes {shapes}")


def save_problem(problem: BlockProblem, path: str | os.PathLike) -> None:
    """Write a problem's blocks A, B, C (and D when known) to an ``.npz`` archive.

    Parameters
    ----------
    problem : BlockProblem
        The problem; ``meta`` is not saved.
    path : str or path-like
        Target file (numpy appends ``.npz`` if missing).
    """
    arrays = {"A": problem.A, "B": problem.B, "C": problem.C}
    if problem.D is not None:
        arrays["D"] = problem.D
    np.savez(path, **arrays)
