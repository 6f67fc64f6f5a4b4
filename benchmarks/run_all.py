"""Run every benchmark (``make bench``) and index the results in ``benchmarks/results/README.md``.

Each ``benchmarks/bench_*.py`` is a script with a ``--smoke`` mode that writes
``benchmarks/results/<name>.json`` (``<name>_smoke.json`` in smoke mode). This driver runs them
one after the other in fresh processes and writes a markdown index of the JSON files with the
machine each was measured on.

Usage: ``python benchmarks/run_all.py [--smoke] [--only NAME ...]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def _machine(data: dict) -> str:
    machine = data.get("machine") or {}
    versions = machine.get("versions") or {}
    return (f"{machine.get('cpu_model', '?')}, {machine.get('cpu_cores', '?')} cores, "
            f"GPUs: {', '.join(machine.get('gpus') or []) or 'none'}, TF {versions.get('tensorflow', '?')}")


def write_index() -> Path:
    """Markdown table of every JSON result: file, benchmark, command, machine."""
    rows = ["# Benchmark results", "", "Written by `python benchmarks/run_all.py`; each JSON holds its own numbers.", "",
            "| file | benchmark | command | machine |", "|---|---|---|---|"]
    for path in sorted(RESULTS.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        rows.append(f"| `{path.name}` | {data.get('benchmark', '')} | `{data.get('command', '')}` | {_machine(data)} |")
    index = RESULTS / "README.md"
    index.write_text("\n".join(rows) + "\n")
    return index


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="seconds-long smoke runs (what CI checks)")
    parser.add_argument("--only", nargs="*", help="benchmark names, e.g. simulate prepare")
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        name = script.stem[len("bench_"):]
        if args.only and name not in args.only:
            continue
        started = time.time()
        command = [sys.executable, str(script)] + (["--smoke"] if args.smoke else [])
        result = subprocess.run(command, cwd=HERE.parent)
        print(f"{name}: exit {result.returncode} after {time.time() - started:.0f} s", flush=True)
        if result.returncode:
            failed.append(name)
    print(f"index: {write_index()}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
