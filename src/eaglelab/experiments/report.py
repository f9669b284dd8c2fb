"""REPORT.md from the results in a reproduction folder: the header (versions, machine,
threads, wall and training time), the claims table with ours beside the paper's, every
experiment's section and figures, and what failed or is missing."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eaglelab.records import package_versions

__all__ = ["write_report", "section_markdown"]


def _provenance_lines(configs: dict[str, dict]) -> list[str]:
    """A warning when the sections were not all produced by one code version: the git
    commit and start date each experiment recorded in its config.json, grouped."""
    groups: dict[str, list[str]] = {}
    for name, cfg in configs.items():
        commit = (cfg.get("versions") or {}).get("git_commit") or "unknown commit"
        date = str(cfg.get("started_utc", ""))[:10] or "unknown date"
        groups.setdefault(f"{commit[:7]}{'+dirty' if commit.endswith('+dirty') else ''} "
                          f"({date})", []).append(name)
    if len(groups) <= 1:
        return []
    lines = ["**Not one run.** The sections below come from "
             f"{len(groups)} code versions (commit, start date: experiments); a claim rule or "
             "a fix made after a section was produced does not show in it until that "
             "experiment is re-run (`eaglelab reproduce all` makes one consistent report):", ""]
    lines += [f"- {key}: {', '.join(names)}" for key, names in sorted(groups.items(),
                                                                       key=lambda kv: kv[0])]
    started: dict[str, str] = {}          # commit -> its earliest start
    for cfg in configs.values():
        c = (cfg.get("versions") or {}).get("git_commit") or ""
        t = str(cfg.get("started_utc", ""))
        started[c] = min(started.get(c, t), t)
    commits = sorted(started, key=started.get)
    if len(commits) > 1 and all(c and not c.endswith("+dirty") for c in commits):
        first = commits[0]
        for later in commits[1:]:
            changed = _changed_package_files(first, later)
            if changed is not None:
                lines.append(f"- package files changed from {first[:7]} to {later[:7]}: "
                             + (", ".join(changed) if changed else "none"))
    return lines + [""]


def _changed_package_files(a: str, b: str) -> list[str] | None:
    """The files under src/ that differ between commits a and b (git, when this package
    lives in its repository), or None when git cannot tell."""
    import subprocess

    root = Path(__file__).resolve().parents[3]
    try:
        out = subprocess.run(["git", "-C", str(root), "diff", "--name-only", a, b, "--", "src"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return [line.removeprefix("src/eaglelab/") for line in out.splitlines() if line]


def write_report(out: str | os.PathLike, *, failures: dict[str, str] | None = None,
                 total_wall: float | None = None, ran: Sequence[str] | None = None) -> Path:
    """Assemble <out>/REPORT.md from every <out>/<name>/result.json (registry order)."""
    from eaglelab.experiments import EXPERIMENTS

    out = Path(out)
    results = []
    for name in EXPERIMENTS:
        path = out / name / "result.json"
        if path.exists():
            results.append(json.loads(path.read_text()))
    failures = failures or {}
    lines = ["# Reproduction report: Linear Transformers Implicitly Discover Unified Numerical "
             "Algorithms (arXiv 2509.19702)", ""]
    versions = package_versions()
    modes = sorted({"quick" if r["quick"] else "full" for r in results})
    configs = {}
    for r in results:
        cfg_path = out / r["name"] / "config.json"
        configs[r["name"]] = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
    threads = {c.get("blas_threads") for c in configs.values() if c}
    thread_text = ", ".join("library default (all cores)" if t is None else str(t)
                            for t in sorted(threads, key=lambda t: -1 if t is None else t))
    lines += [
        f"Generated {datetime.now(UTC).isoformat(timespec='seconds')} by "
        f"`eaglelab reproduce` (eaglelab {versions.get('eaglelab')}, numpy {versions.get('numpy')}, "
        f"scipy {versions.get('scipy')}, torch {versions.get('torch')}) on {os.cpu_count()} CPU "
        f"cores, no GPU.  Precision: the transformers train in float32 and are extracted and "
        f"measured in float64; the solvers run in float64.  Mode: {', '.join(modes) or 'none'}"
        f".  BLAS threads: {thread_text or '—'}.",
        "",
    ]
    if total_wall is not None:
        lines += [f"Wall time of this run ({', '.join(ran or [])}): {total_wall:.1f} s.", ""]
    elif results:
        lines += ["Sum of the experiments' wall times: "
                  f"{sum(r['wall_seconds'] for r in results):.1f} s ("
                  + ", ".join(f"{r['name']} {r['wall_seconds']:.0f} s" for r in results) + ").",
                  ""]
    lines += _provenance_lines(configs)
    lines += _training_lines(results, configs)
    lines += ["Each experiment's own wall time, config, seeds and package versions are in "
              "`<name>/config.json`; every plotted number is in `<name>/result.json`.", ""]

    lines += ["## Claims: ours beside the paper's", "",
              "| experiment | claim | paper | ours | verdict | why |",
              "|---|---|---|---|---|---|"]
    n_agree = n_total = n_untested = 0
    for r in results:
        for c in r["claims"]:
            n_total += 1
            n_agree += c["verdict"] == "agrees"
            n_untested += c["verdict"] == "not tested"
            lines.append(f"| {r['name']} | {_cell(c['claim'])} | {_cell(_fmt(c['paper']))} | "
                         f"{_cell(_fmt(c['ours']))} | **{c['verdict']}** | {_cell(c['reason'])} |")
    lines += ["", f"{n_agree} of {n_total} claims agree"
              + (f"; {n_untested} not tested by our measurement" if n_untested else "") + ".", ""]

    not_run = [n for n in EXPERIMENTS if not (out / n / "result.json").exists()]
    if not_run or failures:
        lines += ["## Not in this report", ""]
        for n in not_run:
            if n not in failures:
                lines.append(f"- `{n}`: not run into this directory.")
        for n, tb in failures.items():
            lines += [f"- `{n}`: **failed**:", "", "```", tb.rstrip(), "```"]
        lines.append("")

    for r in results:
        lines.append(section_markdown(r, prefix=f"{r['name']}/", level=2))
    path = out / "REPORT.md"
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path


def _training_lines(results: list[dict], configs: dict[str, dict]) -> list[str]:
    """The training behind the report: every trained run the experiments used, counted once
    (a run serves every experiment that uses it), with its measured training time."""
    runs: dict[str, float] = {}
    rest = 0.0                    # the experiments' wall time outside training
    for r in results:
        cfg = configs[r["name"]]
        runs.update(cfg.get("trained_runs") or {})
        rest += r["wall_seconds"] - float(cfg.get("training_wall_seconds") or 0.0)
    if not runs:
        return []
    train = sum(runs.values())
    total = train + rest
    return [f"Training behind these results: {len(runs)} runs, {train:.0f} s of measured "
            f"training (each run's timing.jsonl, summed over its resumes; the runs are under "
            f"`_runs/`, each used by every experiment that needs it).  With the experiments' "
            f"own work ({rest:.0f} s), a `reproduce all` of these settings from an empty run "
            f"cache costs about {total:.0f} s ({total / 3600:.1f} h) on this machine (a "
            f"little less when one run would replace several seed blocks).", ""]


def section_markdown(r: dict[str, Any], prefix: str, level: int) -> str:
    h = "#" * level
    mode = "quick" if r["quick"] else "full"
    lines = [f"{h} `{r['name']}`: {r['title']}", "",
             f"Paper: {r['paper_ref']}.  Mode: {mode}; wall time {r['wall_seconds']:.1f} s.", ""]
    if r["section"]:
        lines += [r["section"].rstrip(), ""]
    if r["claims"]:
        lines += ["| claim | paper | ours | verdict | why |", "|---|---|---|---|---|"]
        for c in r["claims"]:
            lines.append(f"| {_cell(c['claim'])} | {_cell(_fmt(c['paper']))} | "
                         f"{_cell(_fmt(c['ours']))} | **{c['verdict']}** | {_cell(c['reason'])} |")
        lines.append("")
    for fig in r["figures"]:
        caption = r.get("captions", {}).get(fig, fig)
        lines += [f"![{caption}]({prefix}{fig})", "", f"*{caption}*", ""]
    return "\n".join(lines)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v)
    return str(v)


