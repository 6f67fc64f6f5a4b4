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
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common, also when a test loads this file by path
import _common as common

IMAGE_SIZE = 64  # pixels


def child(args) -> None:
    """One measurement in this process: simulate to a file, write timings and memory as JSON."""
    from avader.simulate import simulate

    with common.PeakSampler("RssAnon") as anon:
        wall, cpu = time.perf_counter(), common.cpu_seconds()
        simulate(args.n, IMAGE_SIZE, seed=0, workers=args.workers, out=args.data, overwrite=True, progress=False,
                 blends=args.blends)
        wall, cpu = time.perf_counter() - wall, common.cpu_seconds() - cpu
    result = {"n": args.n, "workers": args.workers, "blends": args.blends, "seconds": round(wall, 3),
              "galaxies_per_second": round(args.n / wall, 1), "cpu_ms_per_galaxy": round(1e3 * cpu / args.n, 3),
              "main_vmhwm_mib": round(common.status_mib("VmHWM"), 1), "main_peak_rss_anon_mib": round(anon.peak, 1),
              "worker_peak_rss_mib": round(common.children_peak_rss_mib(), 1) if args.workers > 1 else None,
              "file_mib": round(Path(args.data).stat().st_size / 2**20, 2)}
    Path(args.json).write_text(json.dumps(result))


def measure(n: int, workers: int, blends: bool = False) -> dict:
    """Run :func:`child` in a fresh subprocess and return its result."""
    with tempfile.TemporaryDirectory() as tmp:
        options = ["--n", str(n), "--workers", str(workers), "--data", str(Path(tmp) / "set.fits")]
        result = common.run_child(__file__, options + (["--blends"] if blends else []), tmp)
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
    common.add_child_options(parser)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--blends", action="store_true", help=argparse.SUPPRESS)
    args = common.parse_args(parser, argv, child)
    if args is None:
        return 0
    from avader.runs import machine_info

    n = args.n or (40 if args.smoke else 2000)
    load_before = common.load_average()
    started = time.time()
    one = [measure(max(n // 4, 1), 1), measure(n, 1)]
    two = [measure(n, 2), measure(4 * n, 2)]
    blends = measure(max(n // 4, 1), 2, blends=True)
    result = {
        "benchmark": "avader.simulate.simulate: SDSS-like GalSim galaxies streamed to a GalaxySet file",
        "command": common.command_line(__file__, argv),
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
        "load_average_before": load_before,
        "load_average_after": common.load_average(),
        "seconds": round(time.time() - started, 1),
        "machine": machine_info(with_devices=False),
    }
    out = args.out or common.RESULTS / ("simulate_smoke.json" if args.smoke else "simulate.json")
    common.write_result(out, result)
    logging.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
