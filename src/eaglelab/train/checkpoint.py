"""Run folder and checkpoints (safetensors, written atomically).

Run folder layout::

    RUN_DIR/config.json          resolved RunConfig (JSON)
    RUN_DIR/environment.json     python, torch, numpy, safetensors, eaglelab versions, threads
    RUN_DIR/metrics.jsonl        deterministic metrics, one JSON object per line
    RUN_DIR/timing.jsonl         wall-clock timings (not deterministic)
    RUN_DIR/checkpoint.safetensors   latest training state (see below)
    RUN_DIR/model.safetensors    final weights, written when the run completes
    RUN_DIR/.lock                held (flock) by the process training the run

A checkpoint holds the weights (theta, head_mask), the Adam state (m, v, per-seed step
count), every seed's data-generator state, the spike guard's state and the metric
accumulators; its metadata (str -> str) holds the config as a JSON string, the step, the
current number of heads, and the byte length of metrics.jsonl at that step (a resumed run
truncates the file there, so lines written after the checkpoint are replaced by the same
lines recomputed).  Files are written to a temporary name, fsynced and os.replace'd, so a
kill at any moment leaves either the old or the new checkpoint.  One process at a time
trains a run folder (`run_lock`): a second one would interleave checkpoints and metrics.
Every file records a sha256 of its tensors (`tensors_digest`), checked on load, and a
checkpoint with non-finite weights or a metrics.jsonl shorter than it expects is refused
on resume.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

__all__ = ["CHECKPOINT", "MODEL", "atomic_save", "load_tensors", "environment", "tensors_digest",
           "run_lock", "write_text_atomic"]

CHECKPOINT = "checkpoint.safetensors"
MODEL = "model.safetensors"
FORMAT = "eaglelab-checkpoint/1"


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold RUN_DIR/.lock (an exclusive, non-blocking flock, released when the process ends
    in any way).  ValueError naming the holder when another process holds it.  A no-op
    where fcntl does not exist."""
    try:
        import fcntl
    except ImportError:                  # not POSIX: no locking
        yield
        return
    with open(Path(run_dir) / ".lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise ValueError(f"{run_dir} is being trained by {holder}; wait for it to end "
                             f"or stop it before resuming") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"process {os.getpid()} on {platform.node()}")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write a safetensors file via a temporary file and os.replace."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    clean = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}  # any device
    save_file(clean, str(tmp), metadata={"format": FORMAT, **metadata,
                                         "sha256": tensors_digest(clean)})
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def write_text_atomic(path: Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors and the metadata of a safetensors file."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # safetensors raises its own error type for damaged files
        raise ValueError(f"{path} is not a readable safetensors file ({exc}); it is damaged or "
                         "was not written by eaglelab - restore it or retrain") from exc
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not an eaglelab checkpoint (format "
                         f"{meta.get('format')!r}, expected {FORMAT!r})")
    if "sha256" in meta and meta["sha256"] != tensors_digest(tensors):
        raise ValueError(f"{path} fails its checksum: its tensors changed after it was "
                         "written (a damaged file or an edit) - restore it or retrain")
    return tensors, meta


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes (in name order): what a
    file written by `atomic_save` records and `load_tensors` checks (files written before
    the checksum existed have none and load unchecked)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def environment() -> dict:
    """Versions and settings that determine a run's numerics."""
    import numpy
    import safetensors

    from eaglelab.records import __version__

    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "machine": platform.machine(), "torch": torch.__version__,
            "numpy": numpy.__version__, "safetensors": safetensors.__version__,
            "eaglelab": __version__, "torch_threads": torch.get_num_threads(),
            "mkl": bool(torch.backends.mkl.is_available())}


def dumps_line(obj: dict) -> str:
    return json.dumps(obj, sort_keys=True, allow_nan=True) + "\n"
