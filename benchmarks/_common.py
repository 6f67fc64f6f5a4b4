"""Helpers shared by the benchmark scripts ``benchmarks/bench_*.py`` (not a benchmark itself).

Each script measures in fresh child processes: the parent runs ``python bench_X.py --child ...
--json FILE`` (:func:`run_child`, or :func:`run_wrapped_child` to learn the child's peak resident
set), the child does one measurement and writes its numbers to ``FILE``. The scripts import this
module as ``_common``, with their own folder put on ``sys.path`` first (so that it also works when
a test loads a script by its file path).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

WRAPPER = ("import json, resource, subprocess, sys\n"
           "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
           "print(json.dumps({'rc': rc, 'maxrss_kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n")
"""``python -c`` program: run its arguments as a command, print its exit status and peak resident set (KiB) as JSON."""


def status_mib(key: str) -> float:
    """A memory field of ``/proc/self/status`` (``VmHWM``, ``VmRSS``, ``RssAnon``, ...) in MiB; NaN when absent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


class PeakSampler:
    """Largest value of a ``/proc/self/status`` field while a ``with`` block runs, sampled by a thread.

    Parameters
    ----------
    key : str
        The field, e.g. ``"RssAnon"`` (the memory the process itself allocates).
    interval : float
        Seconds between samples.

    Attributes
    ----------
    peak : float
        The largest sample so far, in MiB (0 before the first sample).
    """

    def __init__(self, key: str = "RssAnon", interval: float = 0.01):
        self.key, self.interval, self.peak = key, interval, 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(self.interval):
            self.peak = max(self.peak, status_mib(self.key))

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()


def cpu_seconds() -> float:
    """CPU time (user and system) of this process and of its finished, waited-for child processes."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def children_peak_rss_mib() -> float:
    """Peak resident set of the largest finished, waited-for child process, in MiB (``RUSAGE_CHILDREN``)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded to 0.01 (this machine may be shared)."""
    return [round(v, 2) for v in os.getloadavg()]


def command_line(script, argv=None) -> str:
    """The result's ``command``: ``python benchmarks/<script> ARGS`` with this interpreter's name."""
    return " ".join([Path(sys.executable).name, f"benchmarks/{Path(script).name}", *(argv or sys.argv[1:])])


def add_child_options(parser: argparse.ArgumentParser, *names: str) -> None:
    """Add the hidden options of a child run: ``--child``, ``--data``, ``--json`` and ``names`` (strings)."""
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for name in ("--data", "--json", *names):
        parser.add_argument(name, help=argparse.SUPPRESS)


def parse_args(parser: argparse.ArgumentParser, argv, child):
    """Parse ``argv``; with ``--child`` run ``child(args)`` and return None.

    Otherwise (the parent) log INFO messages to stderr, put the repository root on ``sys.path``
    (for ``import avader``) and return the parsed arguments.
    """
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return None
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.path.insert(0, str(ROOT))
    return args


def child_env(**extra: str) -> dict:
    """The environment of a child: this one plus ``extra``, with the repository root first on ``PYTHONPATH``."""
    return {**os.environ, **extra, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _child_command(script, options, report: Path) -> list[str]:
    return [sys.executable, str(Path(script).resolve()), "--child", *options, "--json", str(report)]


def run_child(script, options, tmp=None, **env: str) -> dict:
    """Run ``script --child OPTIONS --json FILE`` in a fresh Python process; return the JSON it writes to FILE.

    Parameters
    ----------
    script : path
        The benchmark script (its ``__file__``).
    options : list of str
        Further command-line options of the child.
    tmp : path, optional
        Folder of the report file ``child.json`` (default: a temporary folder of its own).
    **env : str
        Extra environment variables (:func:`child_env`).

    Raises
    ------
    subprocess.CalledProcessError
        The child failed. Its output goes to this process's stdout and stderr.
    """
    if tmp is None:
        with tempfile.TemporaryDirectory() as own:
            return run_child(script, options, own, **env)
    report = Path(tmp) / "child.json"
    subprocess.run(_child_command(script, options, report), check=True, env=child_env(**env))
    return json.loads(report.read_text())


def run_wrapped_child(script, options, what: str, **env: str) -> tuple[dict, float]:
    """:func:`run_child` under :data:`WRAPPER`: the child's JSON and its peak resident set in MiB (0.1 MiB).

    The wrapper process starts only the child, so the peak is that of exactly one measurement.
    The child's output is not shown. ``what`` names the child in the ``RuntimeError`` raised when
    it fails (``"{what} failed: exit N"``).
    """
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "child.json"
        cmd = [sys.executable, "-c", WRAPPER, *_child_command(script, options, report)]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=child_env(**env))
        wrapped = json.loads(done.stdout.strip())
        if wrapped["rc"] != 0 or not report.is_file():
            raise RuntimeError(f"{what} failed: exit {wrapped['rc']}")
        return json.loads(report.read_text()), round(wrapped["maxrss_kib"] / 1024, 1)


def write_result(out: Path, result: dict) -> Path:
    """Write a benchmark's result as indented JSON (through a temporary file), creating the folder."""
    from avader.runs import write_json_atomic

    out.parent.mkdir(parents=True, exist_ok=True)
    return write_json_atomic(out, result)
