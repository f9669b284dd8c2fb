"""What every run writes beside its outputs, at the bottom of the package (no eaglelab
imports): JSON conversion of numpy values, the JSON writer, and the package versions and git
commit a result depends on."""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["__version__", "to_jsonable", "write_json", "package_versions", "git_commit"]

__version__ = "0.1.0"     # the package's version (pyproject.toml states the same)


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types; numpy scalars/arrays unpacked; non-finite floats -> None."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    return obj


def write_json(path: Path, obj: Any) -> None:
    """obj as indented JSON (non-finite floats as null, never NaN tokens)."""
    path.write_text(json.dumps(to_jsonable(obj), indent=1, allow_nan=False) + "\n")


def package_versions() -> dict[str, str | None]:
    """Versions of the packages whose numerics the results depend on, and the git commit."""
    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for mod in ("numpy", "scipy", "torch", "matplotlib", "eaglelab"):
        try:
            out[mod] = getattr(importlib.import_module(mod), "__version__", None)
        except Exception:  # noqa: BLE001 - a missing optional package is just not reported
            out[mod] = None
    try:
        from threadpoolctl import threadpool_info

        blas = [f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} threads)"
                for i in threadpool_info() if i.get("user_api") == "blas"]
        out["blas"] = "; ".join(blas) or None
    except Exception:  # noqa: BLE001
        out["blas"] = None
    out["git_commit"] = git_commit()
    return out


def git_commit() -> str | None:
    """HEAD of the checkout this package lives in, "+dirty" when the package's own files
    (src/eaglelab) differ from it - results written elsewhere in the checkout (a
    reproduction folder) do not make the code that produces them dirty; None outside git."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                "."], cwd=here, capture_output=True, text=True,
                               timeout=5).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except Exception:  # noqa: BLE001 - not a git checkout
        return None
