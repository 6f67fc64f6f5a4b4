"""Simulation benchmark: galaxies per second and peak memory of ``avader.simulate.simulate``.

Every measurement is one call ``simulate(N, 64, out=FILE, workers=W, progress=False)`` in a fresh
subprocess, so each number includes what a user pays: process start, imports, spawning the
workers, GalSim's one-off Sersic tables, rendering and the streamed FITS write.

Throughput: ``end_to_end`` is N / wall time of the call; ``marginal`` is (N2 - N1) / (t2 - t1)
from two sizes, i.e. the rate once the fixed start-up cost is paid. ``cpu_ms_per_galaxy`` is the
CPU time of the call and its workers per galaxy; 2000 / cpu_ms_per_galaxy is what two idle cores
would give, and is recorded because this machine is shared (see the load averages).

Memory: the same call on N and 4N galaxies with 2 workers. Reported per run: the peak resident
set of the main process (``VmHWM``; it includes file-backed pages of the memory-mapped image
cube, which the kernel can drop), the peak anonymous memory of the main process (``RssAnon``
sampled every 10 ms: what the process itself allocates) and the largest worker's peak
(``RUSAGE_CHILDREN``). Memory flat in N means the 4N peaks are close to the N peaks.

Usage::

    python benchmarks/bench_simulate.py --smoke   # seconds: N = 40 / 160
    python benchmarks/bench_simulate.py           # N = 500 .. 8000, about two minutes on 2 idle cores

Writes ``benchmarks/results/simulate.json`` (``simulate_smoke.json`` with ``--smoke``).
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
IMAGE_SIZE = 64  # pixels


def _status_mib(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(args) -> None:
    """One measurement in this process: simulate to a file, write timings and memory as JSON."""
    from avader.simulate import simulate

    peak_anon = [0.0]
    done = threading.Event()

    def sample():
        while not done.wait(0.01):
            peak_anon[0] = max(peak_anon[0], _status_mib("RssAnon"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    wall, cpu = time.perf_counter(), time.process_time()
    simulate(args.n, IMAGE_SIZE, seed=0, workers=args.workers, out=args.data, overwrite=True, progress=False,
             blends=args.blends)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    done.set()
    sampler.join()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {"n": args.n, "workers": args.workers, "blends": args.blends, "seconds": round(wall, 3),
              "galaxies_per_second": round(args.n / wall, 1),
              "cpu_ms_per_galaxy": round(1e3 * (cpu + children.ru_utime + children.ru_stime) / args.n, 3),
              "main_vmhwm_mib": round(_status_mib("VmHWM"), 1), "main_peak_rss_anon_mib": round(peak_anon[0], 1),
              "worker_peak_rss_mib": round(children.ru_maxrss / 1024, 1) if args.workers > 1 else None,
              "file_mib": round(Path(args.data).stat().st_size / 2**20, 2)}
    Path(args.json).write_text(json.dumps(result))


def measure(n: int, workers: int, blends: bool = False) -> dict:
    """Run :func:`child` in a fresh subprocess and return its result."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "child.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--n", str(n), "--workers", str(workers),
               "--data", str(Path(tmp) / "set.fits"), "--json", str(report)] + (["--blends"] if blends else [])
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        subprocess.run(cmd, check=True, env=env)
        result = json.loads(report.read_text())
    logging.info("%s N=%d workers=%d: %.0f galaxies/s, %.2f CPU ms/galaxy, main peak %.0f MiB (anon %.0f), worker %s MiB",
                 "blends" if blends else "galaxies", n, workers, result["galaxies_per_second"],
                 result["cpu_ms_per_galaxy"], result["main_vmhwm_mib"], result["main_peak_rss_anon_mib"],
                 result["worker_peak_rss_mib"])
    return result


def _marginal(small: dict, large: dict) -> float:
    return round((large["n"] - small["n"]) / (large["seconds"] - small["seconds"]), 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (seconds)")
    parser.add_argument("--n", type=int, help="galaxies of the smaller runs (default 2000; smoke 40)")
    parser.add_argument("--out", type=Path, help="result file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--blends", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.path.insert(0, str(ROOT))
    from avader.runs import machine_info

    n = args.n or (40 if args.smoke else 2000)
    load_before = os.getloadavg()
    started = time.time()
    one = [measure(max(n // 4, 1), 1), measure(n, 1)]
    two = [measure(n, 2), measure(4 * n, 2)]
    blends = measure(max(n // 4, 1), 2, blends=True)
    result = {
        "benchmark": "avader.simulate.simulate: SDSS-like GalSim galaxies streamed to a GalaxySet file",
        "command": " ".join([Path(sys.executable).name, "benchmarks/bench_simulate.py", *(argv or sys.argv[1:])]),
        "mode": "smoke" if args.smoke else "full",
        "image_size": IMAGE_SIZE,
        "throughput": {
            "workers_1": {"runs": one, "end_to_end_galaxies_per_second": one[-1]["galaxies_per_second"],
                          "marginal_galaxies_per_second": _marginal(*one)},
            "workers_2": {"runs": two, "end_to_end_galaxies_per_second": two[-1]["galaxies_per_second"],
                          "marginal_galaxies_per_second": _marginal(*two)},
            "cpu_ms_per_galaxy": two[-1]["cpu_ms_per_galaxy"],
            "two_idle_cores_galaxies_per_second": round(2000 / two[-1]["cpu_ms_per_galaxy"], 1),
            "blends_workers_2": blends,
            "target_galaxies_per_second_2_cores": 200,
        },
        "memory": {
            "n": n, "n_4": 4 * n,
            "main_vmhwm_mib": [two[0]["main_vmhwm_mib"], two[1]["main_vmhwm_mib"]],
            "main_peak_rss_anon_mib": [two[0]["main_peak_rss_anon_mib"], two[1]["main_peak_rss_anon_mib"]],
            "worker_peak_rss_mib": [two[0]["worker_peak_rss_mib"], two[1]["worker_peak_rss_mib"]],
            "image_cube_mib": [round(n * IMAGE_SIZE**2 / 2**20, 1), round(4 * n * IMAGE_SIZE**2 / 2**20, 1)],
        },
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "seconds": round(time.time() - started, 1),
        "machine": machine_info(with_devices=False),
    }
    out = args.out or RESULTS / ("simulate_smoke.json" if args.smoke else "simulate.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    logging.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
