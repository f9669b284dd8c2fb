"""Data placement: column shards of a completion problem, on disk, one file per worker.

Distributed EAGLE (brief section 4) splits the n visible columns of X over M workers:
worker mu holds A^mu = A[:, J_mu] and B^mu = B[:, J_mu]; C (d x n') is shared and copied
into every shard.  A shard directory holds

    manifest.json                       world size, global shapes, problem id, file names
    shard-00000-of-00003.npz ...        one per worker

Each shard is an ``.npz`` (no pickles) with arrays ``A`` (d x n_mu), ``B`` (d' x n_mu),
``C`` (d x n'), ``columns`` (the global indices J_mu, int64), optionally ``reference`` (D*),
and ``header``: a small JSON string

    {"format": "eaglelab-shard", "version": 1, "worker": mu, "world_size": M,
     "d": d, "n": n, "n_local": n_mu, "d_prime": d', "n_prime": n', "dtype": "float64",
     "checksum": sha256 of the arrays, "problem_id": sha256 shared by all shards of a write,
     "has_reference": bool}

A worker reads the manifest and its own shard only (`read_shard`); every defect a file can
have (missing, truncated, not an npz, wrong keys, shapes that contradict the header, a
checksum mismatch, written for another world size) raises `ShardError` naming the file and
the fix.  Whether the shards of different ranks belong together is checked across ranks by
the engine before any round (`eaglelab.distributed.engine`).

`partition_report` gives the diversity index alpha of a partition (smallest positive
eigenvalue of the mean of the projectors onto range(A^mu); Theorem 2: rounds grow like
alpha^{-1} log(1/eps)) and the local condition numbers (log kappa_max term).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eaglelab.solvers._inputs import check_int, prepare
from eaglelab.solvers.distributed import check_partition, partition_columns
from eaglelab.theory import condition_number, diversity_index, numerical_rank

__all__ = [
    "SHARD_FORMAT",
    "SHARD_VERSION",
    "PartitionReport",
    "Shard",
    "ShardError",
    "ShardHeader",
    "ShardSet",
    "make_partition",
    "partition_report",
    "read_manifest",
    "read_shard",
    "shard_filename",
    "shard_npz",
    "write_shards",
]

SHARD_FORMAT = "eaglelab-shard"
SHARD_VERSION = 1
MANIFEST = "manifest.json"
_ARRAYS = ("A", "B", "C", "columns")


class ShardError(ValueError):
    """A shard file or shard directory cannot be used (the message says why and what to do)."""


@dataclass(frozen=True)
class ShardHeader:
    """The JSON header of one shard file (see module docstring)."""

    worker: int
    world_size: int
    d: int
    n: int
    n_local: int
    d_prime: int
    n_prime: int
    dtype: str
    checksum: str
    problem_id: str
    has_reference: bool = False
    format: str = SHARD_FORMAT
    version: int = SHARD_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str) -> ShardHeader:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ShardError(f"{source}: header is not valid JSON ({exc}); "
                             "rewrite the shards") from None
        if not isinstance(raw, dict) or raw.get("format") != SHARD_FORMAT:
            raise ShardError(f"{source}: not an eaglelab shard (header format is "
                             f"{raw.get('format') if isinstance(raw, dict) else raw!r})")
        if raw.get("version") != SHARD_VERSION:
            raise ShardError(f"{source}: shard format version {raw.get('version')!r} is not "
                             f"supported (this eaglelab reads version {SHARD_VERSION}); "
                             "rewrite the shards")
        names = set(cls.__dataclass_fields__)
        missing = sorted(names - set(raw) - {"has_reference"})
        unknown = sorted(set(raw) - names)
        if missing or unknown:
            raise ShardError(f"{source}: header has missing keys {missing} / unknown keys "
                             f"{unknown}; "
                             "rewrite the shards with this eaglelab version")
        ints = ("worker", "world_size", "d", "n", "n_local", "d_prime", "n_prime")
        if any(not isinstance(raw[k], int) or isinstance(raw[k], bool) or raw[k] < 0 for k in ints):
            raise ShardError(f"{source}: header sizes must be non-negative integers, got "
                             f"{ {k: raw[k] for k in ints} }")
        return cls(**raw)


@dataclass
class Shard:
    """One worker's data, as read from its shard file."""

    header: ShardHeader
    A: np.ndarray
    B: np.ndarray
    C: np.ndarray
    columns: np.ndarray
    reference: np.ndarray | None
    path: Path


@dataclass
class PartitionReport:
    """Diversity index and local conditioning of a column partition.

    alpha: smallest positive eigenvalue of (1/M) sum_mu P_mu (P_mu projects onto range(A^mu));
        1 when all blocks span the same subspace, small when the blocks see nearly disjoint
        directions.  Rounds of distributed EAGLE grow like alpha^{-1} log(1/eps).
    local_condition: kappa(A^mu) over its nonzero spectrum, per worker; kappa_max their max.
    local_rank, rank: numerical ranks of the blocks and of A.
    """

    workers: int
    sizes: list[int]
    alpha: float
    local_condition: list[float]
    kappa_max: float
    local_rank: list[int]
    rank: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ShardSet:
    """What `write_shards` wrote."""

    directory: Path
    paths: list[Path]
    partition: list[np.ndarray]
    problem_id: str
    report: PartitionReport | None = None
    manifest: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- partitions


def make_partition(n: int, workers: int | None = None, *, kind: str = "contiguous",
                   seed: int | None = None, assignment: Any = None) -> list[np.ndarray]:
    """Column blocks J_0..J_{M-1} of 0..n-1.

    Either `workers` with kind "contiguous" (consecutive near-equal blocks) or "random" (a
    seeded permutation split in near-equal blocks), or `assignment`: a length-n sequence
    giving each column's worker (0..M-1; every worker must get at least one column).
    Reuses `eaglelab.solvers.distributed.partition_columns`, so the in-process simulation
    and the engine see the same blocks.
    """
    n = check_int("n", n)
    if assignment is not None:
        if workers is not None:
            raise ValueError("give workers=M (with kind=) or assignment=[worker of each column], "
                             "not both")
        owner = np.asarray(assignment)
        if owner.shape != (n,) or owner.dtype.kind not in "iu":
            raise ValueError(f"assignment must be {n} integer worker indices (one per column), "
                             f"got shape {owner.shape} dtype {owner.dtype}")
        M = int(owner.max()) + 1
        if owner.min() < 0:
            raise ValueError("assignment has negative worker indices; use 0..M-1")
        blocks = [np.flatnonzero(owner == mu) for mu in range(M)]
        empty = [mu for mu, b in enumerate(blocks) if b.size == 0]
        if empty:
            raise ValueError(f"assignment gives no column to worker(s) {empty}; "
                             "every worker 0..M-1 needs at least one column")
        return blocks
    if workers is None:
        raise ValueError("give workers=M (with kind='contiguous' or 'random') or assignment=")
    return partition_columns(n, check_int("workers", workers, maximum=n), kind=kind, seed=seed)


def partition_report(A: Any, partition: Sequence[Any]) -> PartitionReport:
    """Diversity index alpha and local condition numbers of a column partition of A
    (`eaglelab.theory.diversity_index`, `condition_number` and `numerical_rank`).

    Costs one SVD per block and one eigenvalue problem (about a second at d = 1000).
    """
    A_ = np.asarray(A.toarray() if hasattr(A, "toarray") else A, dtype=np.float64)
    if A_.ndim != 2:
        raise ValueError(f"A must be 2-D, got shape {A_.shape}")
    blocks = check_partition(partition, A_.shape[1])
    kappas = [condition_number(A_[:, J]) for J in blocks]
    return PartitionReport(workers=len(blocks), sizes=[int(J.size) for J in blocks],
                           alpha=diversity_index(A_, blocks), local_condition=kappas,
                           kappa_max=max(kappas),
                           local_rank=[numerical_rank(A_[:, J]) for J in blocks],
                           rank=numerical_rank(A_))


# ----------------------------------------------------------------------------- files


def shard_filename(worker: int, world_size: int) -> str:
    return f"shard-{worker:05d}-of-{world_size:05d}.npz"


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write_shards(directory: str | Path, A: Any, B: Any, C: Any, *, workers: int | None = None,
                 partition: Sequence[Any] | None = None, kind: str = "contiguous",
                 seed: int | None = None, assignment: Any = None, reference: Any = None,
                 dtype: Any = None, report: bool = True, overwrite: bool = False) -> ShardSet:
    """Partition (A, B, C) into column shards and write one file per worker.

    Blocks come from `partition` (list of column-index arrays) or from `make_partition`
    (workers + kind/seed, or assignment).  reference: D* (d' x n'), stored in every shard so
    each rank can record its error history.  report: also compute alpha and the local
    condition numbers (`partition_report`) and store them in the manifest.
    Refuses to write into a directory that already holds shards unless overwrite=True.
    """
    prep = prepare(A, B, C, dtype=dtype)
    A_, B_, C_ = np.asarray(prep.A), np.asarray(prep.B), prep.C
    d, n, dp, np_ = prep.shape
    if partition is not None:
        if workers is not None or assignment is not None:
            raise ValueError("give one of partition=, workers= or assignment=")
        blocks = check_partition(partition, n)
    else:
        blocks = make_partition(n, workers, kind=kind, seed=seed, assignment=assignment)
    M = len(blocks)
    ref = None
    if reference is not None:
        raw = reference.detach().cpu().numpy() if hasattr(reference, "detach") else reference
        ref = np.asarray(raw, dtype=prep.dtype)
        if ref.shape != (dp, np_) or not np.all(np.isfinite(ref)):
            raise ValueError(f"reference must be a finite d' x n' = {(dp, np_)} array, "
                             f"got shape {ref.shape}")
    for mu, J in enumerate(blocks):
        if not np.any(A_[:, J]):
            raise ValueError(f"worker {mu} would hold an all-zero block of A; repartition")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    if not overwrite and (any(out.glob("shard-*.npz")) or (out / MANIFEST).exists()):
        raise ValueError(f"{out} already holds shards; pass overwrite=True or use an empty "
                         "directory")
    for old in out.glob("shard-*.npz"):
        old.unlink()
    payloads = []
    for J in blocks:
        arrays = {"A": np.ascontiguousarray(A_[:, J]), "B": np.ascontiguousarray(B_[:, J]),
                  "C": np.ascontiguousarray(C_), "columns": np.asarray(J, dtype=np.int64)}
        if ref is not None:
            arrays["reference"] = np.ascontiguousarray(ref)
        payloads.append((arrays, _checksum(arrays)))
    ident = json.dumps([M, d, n, dp, np_, prep.dtype.name, [c for _, c in payloads]])
    problem_id = hashlib.sha256(ident.encode()).hexdigest()
    paths = []
    for mu, (arrays, checksum) in enumerate(payloads):
        header = ShardHeader(worker=mu, world_size=M, d=d, n=n, n_local=int(blocks[mu].size),
                             d_prime=dp, n_prime=np_, dtype=prep.dtype.name, checksum=checksum,
                             problem_id=problem_id, has_reference=ref is not None)
        path = out / shard_filename(mu, M)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, header=np.array(header.to_json()), **arrays)
        tmp.replace(path)
        paths.append(path)
    rep = partition_report(A_, blocks) if report else None
    manifest = {"format": SHARD_FORMAT, "version": SHARD_VERSION, "world_size": M, "d": d, "n": n,
                "d_prime": dp, "n_prime": np_, "dtype": prep.dtype.name, "problem_id": problem_id,
                "files": [p.name for p in paths], "report": rep.to_dict() if rep else None}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return ShardSet(directory=out, paths=paths, partition=blocks, problem_id=problem_id,
                    report=rep, manifest=manifest)


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of a shard directory (ShardError when absent or unreadable)."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ShardError(f"{directory} is not a shard directory (no {MANIFEST}); "
                         "write shards with eaglelab.distributed.write_shards")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ShardError(f"{path}: cannot read the manifest ({exc}); rewrite the shards") from None
    if not isinstance(manifest, dict) or manifest.get("format") != SHARD_FORMAT:
        raise ShardError(f"{path}: not an eaglelab shard manifest")
    ws = manifest.get("world_size")
    if not isinstance(ws, int) or ws < 1:
        raise ShardError(f"{path}: world_size must be a positive integer, got {ws!r}")
    return manifest


def read_shard(directory: str | Path, worker: int, world_size: int | None = None) -> Shard:
    """Read and verify worker `worker`'s shard; never touches other workers' files.

    world_size: the size of the running group; a mismatch with the shards raises ShardError
    before anything else is read.
    """
    manifest = read_manifest(directory)
    M = manifest["world_size"]
    if world_size is not None and world_size != M:
        raise ShardError(f"the shards in {directory} were written for {M} workers but the run has "
                         f"world size {world_size}; launch {M} ranks (e.g. torchrun "
                         f"--nproc-per-node {M}) or rewrite the shards for {world_size} workers")
    if not 0 <= worker < M:
        raise ShardError(f"worker {worker} has no shard in {directory} (shards 0..{M - 1})")
    path = Path(directory) / shard_filename(worker, M)
    src = str(path)
    if not path.is_file():
        raise ShardError(f"{src}: shard file of worker {worker} is missing; rewrite the shards")
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            missing = [k for k in ("header", *_ARRAYS) if k not in files]
            if missing:
                raise ShardError(f"{src}: shard lacks arrays {missing}; rewrite the shards")
            header = ShardHeader.from_json(str(z["header"]), src)
            arrays = {k: z[k] for k in files if k != "header"}
    except ShardError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise ShardError(f"{src}: cannot read shard file ({type(exc).__name__}: {exc}); the "
                         "file is truncated or not an npz - rewrite the shards") from None
    h = header
    if h.worker != worker or h.world_size != M:
        raise ShardError(f"{src}: header says worker {h.worker} of {h.world_size}, expected worker "
                         f"{worker} of {M}; the directory mixes shards of different writes")
    expect = {"A": (h.d, h.n_local), "B": (h.d_prime, h.n_local), "C": (h.d, h.n_prime),
              "columns": (h.n_local,)}
    if h.has_reference:
        expect["reference"] = (h.d_prime, h.n_prime)
    for k, shape in expect.items():
        if k not in arrays:
            raise ShardError(f"{src}: header announces {k!r} but the file lacks it; "
                             "rewrite the shards")
        if arrays[k].shape != shape:
            raise ShardError(f"{src}: {k} has shape {arrays[k].shape} but the header says {shape}; "
                             "rewrite the shards")
    for k in ("A", "B", "C", "reference"):
        if k in arrays and arrays[k].dtype.name != h.dtype:
            raise ShardError(f"{src}: {k} has dtype {arrays[k].dtype} but the header says "
                             f"{h.dtype}")
    if arrays["columns"].dtype.kind not in "iu":
        raise ShardError(f"{src}: columns must be integer indices, got {arrays['columns'].dtype}")
    if _checksum(arrays) != h.checksum:
        raise ShardError(f"{src}: checksum mismatch - the file is corrupt or was edited; "
                         "rewrite the shards")
    if not all(np.all(np.isfinite(arrays[k])) for k in ("A", "B", "C")):
        raise ShardError(f"{src}: contains NaN or Inf; clean the data and rewrite the shards")
    return Shard(header=h, A=arrays["A"], B=arrays["B"], C=arrays["C"], columns=arrays["columns"],
                 reference=arrays.get("reference"), path=path)


def shard_npz(problem: str | Path, out: str | Path, *, workers: int,
              kind: str = "contiguous", seed: int | None = None, report: bool = True,
              overwrite: bool = False) -> ShardSet:
    """Write the shards of a problem stored as an npz with arrays A, B, C (and optionally D,
    the reference) to `out` (`write_shards`); ValueError when an array is missing."""
    with np.load(problem, allow_pickle=False) as z:
        missing = [k for k in ("A", "B", "C") if k not in z.files]
        if missing:
            raise ValueError(f"{problem} lacks arrays {missing}")
        A, B, C = z["A"], z["B"], z["C"]
        ref = z["D"] if "D" in z.files else None
    return write_shards(out, A, B, C, workers=workers, kind=kind, seed=seed, reference=ref,
                        report=report, overwrite=overwrite)
