"""docs/tutorial.md runs: its Python blocks, in order, in one namespace, in a temporary
folder (so the page cannot drift from the code)."""

from __future__ import annotations

import re
from pathlib import Path

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"


def test_the_tutorial_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", TUTORIAL.read_text(), flags=re.S)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for k, code in enumerate(blocks):
        exec(compile(code, f"{TUTORIAL.name} block {k + 1}", "exec"), namespace)  # noqa: S102
    assert (tmp_path / "runs" / "tutorial" / "model.safetensors").exists()
