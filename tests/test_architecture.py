"""The package's layers: every import between subpackages points down (docs/architecture.md).

The order, lowest first; a module may import its own layer and any lower one:

    records, settings, devices, theory, learning_dynamics, tasks  <  models, solvers
    <  train, distributed  <  extract  <  experiments  <  cli
    <  the package root (eaglelab/__init__) and every __main__.py

Every import counts, module-level and inside functions, so a lazy import cannot hide an
upward edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

import eaglelab

LAYERS = [
    {"records", "settings", "devices", "theory", "learning_dynamics", "tasks"},
    {"models", "solvers"},
    {"train", "distributed"},
    {"extract"},
    {"experiments"},
    {"cli"},
    {"__init__", "__main__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}
ROOT = Path(eaglelab.__file__).parent


def _unit(path: Path) -> str:
    """The subpackage (or top-level module) a source file belongs to; every `__main__.py`
    is an entry point and sits at the top with the package root."""
    if path.name == "__main__.py":
        return "__main__"
    first = path.relative_to(ROOT).parts[0]
    return first.removesuffix(".py")


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([node.module] if isinstance(node, ast.ImportFrom) and node.module
                 else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        for name in names:
            parts = name.split(".")
            if parts[0] == "eaglelab":
                out.add(parts[1] if len(parts) > 1 else "__init__")
    return out


def test_every_unit_has_a_layer():
    units = {_unit(p) for p in ROOT.rglob("*.py")}
    assert units <= set(RANK), sorted(units - set(RANK))


def test_no_import_points_up():
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        src = _unit(path)
        for dst in _imports(path):
            if dst != src and RANK[dst] > RANK[src]:
                upward.append(f"{path.relative_to(ROOT)} imports eaglelab.{dst}")
    assert not upward, "\n".join(upward)


def test_the_walk_sees_lazy_imports(tmp_path):
    """The check must catch an import inside a function (how upward edges used to hide)."""
    f = tmp_path / "m.py"
    f.write_text("import os\n\ndef f():\n    from eaglelab.cli import main\n"
                 "    import eaglelab.train.loop\n")
    assert _imports(f) == {"cli", "train"}


def test_the_version_has_one_value():
    """records.__version__ (what runs record) equals pyproject.toml's."""
    import tomllib

    import pytest

    pyproject = ROOT.parents[1] / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip("not a source checkout")
    stated = tomllib.loads(pyproject.read_text())["project"]["version"]
    assert eaglelab.__version__ == stated


def test_one_setting_parser_for_training_and_experiments():
    """Training overrides and experiment --set read text the same way (they used to
    disagree on yes/on)."""
    import pytest

    from eaglelab.experiments import layers
    from eaglelab.settings import parse_setting
    from eaglelab.train.config import apply_overrides

    for text in ("yes", "on", "1", "true"):
        assert parse_setting("k", text, False) is True
        sections = {"train": {"compile": False}}
        apply_overrides(sections, {"train.compile": text})
        assert sections["train"]["compile"] is True
    assert layers.make_config(noisy_std="0.2").noisy_std == 0.2
    assert parse_setting("k", "1,2.5", (0.0,)) == (1, 2.5)
    assert type(parse_setting("k", 0, 0.5)) is float         # typed overrides: one hash
    with pytest.raises(ValueError, match="k: cannot read 'x' as int"):
        parse_setting("k", "x", 3)


def test_one_haar_sampler():
    """No copy of the Haar construction outside tasks/haar.py (doctest examples aside)."""
    copies = []
    for path in sorted(ROOT.rglob("*.py")):
        if path.relative_to(ROOT).as_posix() == "tasks/haar.py":
            continue
        for k, line in enumerate(path.read_text().splitlines(), 1):
            code = line.strip()
            if not code.startswith(">>>") and ("qr(rng.standard_normal" in code
                                               or "qr(torch.randn" in code):
                copies.append(f"{path.relative_to(ROOT)}:{k}")
    assert not copies, copies


def test_haar_is_orthonormal_and_consumes_one_gaussian_draw():
    import numpy as np
    import torch

    from eaglelab.tasks.haar import haar, haar_batch

    Q = haar(np.random.default_rng(3), 9, 4)
    np.testing.assert_allclose(Q.T @ Q, np.eye(4), atol=1e-13)
    # the stream: exactly one standard_normal((9, 4)) draw, then the sign-fixed QR factor
    rng = np.random.default_rng(3)
    G = rng.standard_normal((9, 4))
    Q0, R0 = np.linalg.qr(G)
    np.testing.assert_array_equal(Q, Q0 * np.sign(np.diag(R0)))
    assert np.all(np.diag(Q.T @ G) > 0)                     # R's diagonal made positive
    T = haar_batch(torch.Generator().manual_seed(0), 5, 7, 3)
    eye = torch.eye(3, dtype=torch.float64).expand(5, 3, 3)
    torch.testing.assert_close(T.transpose(1, 2) @ T, eye, atol=1e-13, rtol=0)


def test_no_module_borrows_another_modules_private_helpers():
    """A private name (`_x`) is imported only from a private module (`_kernels.py`,
    `_result.py`, ...) made to share it, never from another public module: the baselines
    used to borrow each other's helpers in a chain (sgd -> gd -> cg, lsmr -> lstsq)."""
    borrowed = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.module
                    and node.module.startswith("eaglelab")):
                continue
            last = node.module.split(".")[-1]
            folder = ROOT.joinpath(*node.module.split(".")[1:])
            for alias in node.names:
                a = alias.name
                module = (folder / f"{a}.py").exists() or (folder / a).is_dir()
                if (a.startswith("_") and not a.startswith("__") and not module
                        and not last.startswith("_")):
                    borrowed.append(f"{path.relative_to(ROOT)}: {a} from {node.module}")
    assert not borrowed, "\n".join(borrowed)


def test_command_line_parsing_lives_in_cli():
    """argparse, typer and click are imported only by `eaglelab.cli` (one CLI system);
    module entry points (`python -m eaglelab.train`, `python -m eaglelab.distributed`)
    forward to it."""
    outside = []
    for path in sorted(ROOT.rglob("*.py")):
        if _unit(path) == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module] if isinstance(node, ast.ImportFrom) and node.module
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            outside += [f"{path.relative_to(ROOT)}: {n}" for n in names
                        if n.split(".")[0] in ("argparse", "typer", "click")]
    assert not outside, outside
