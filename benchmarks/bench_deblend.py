"""Blend benchmark: the avader deblender against photutils and sep on simulated blends with truth.

A trained run's model deblends a simulated blend set (``avader.simulate.simulate(..., blends=True)``:
2 or 3 galaxies per image, the brighter first, isolated components stored) and
:func:`avader.deblending.benchmark` scores every true source (MSE, PSNR, SSIM, dF/F, centroid
and ellipticity residuals; detection precision and recall), binned by separation (units of the
brighter galaxy's half-light radius) and flux ratio, for the methods ``avader`` (centres from the
run's learned detector when it has one, ``detector.keras``), ``avader_peaks`` (peak detection),
``avader_true_centres``, ``photutils`` and ``sep`` in the same run. Every method gets the
catalogue's noise and sky level. The ``bar`` entry holds the issue's acceptance checks.

Usage::

    python benchmarks/bench_deblend.py --smoke                     # seconds: untrained tiny model, 4 blends
    python benchmarks/bench_deblend.py --run data/runs/quick       # the measurement (analysis.n_blends blends)
    python benchmarks/bench_deblend.py --run RUN --blends FILE --n 200 --steps 150 --figure

Writes ``benchmarks/results/deblend.json`` (``deblend_smoke.json`` with ``--smoke``); ``--figure``
also writes ``figures/deblend_benchmark.png``.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
log = logging.getLogger(__name__)

__all__ = ["main", "run_benchmark"]


def _smoke_model():
    from avader.config import load_config
    from avader.model import build_vade

    model = build_vade(load_config("smoke").model, seed=0)
    model.set_mode("vade")
    return model


def run_benchmark(model, blends_path, n: int, steps: int, methods, seed: int = 0, image_size: int | None = None,
                  detector=None, prior_weight: float = 1.0, augment: int = 1) -> dict:
    """Simulate ``n`` blends into ``blends_path`` when it does not exist, then benchmark ``model`` on them."""
    from avader.data import GalaxySet
    from avader.deblending import benchmark
    from avader.simulate import simulate

    blends_path = Path(blends_path)
    size = image_size or model.model_config.image_size
    if not blends_path.is_file():
        simulate(n, image_size=size, seed=seed, blends=True, out=blends_path, workers=1, progress=False)
    blendset = GalaxySet.read(blends_path)
    return benchmark(model, blendset, methods=methods, n=n, steps=steps, detector=detector, prior_weight=prior_weight,
                     deblend_options={"augment": augment})


def main(argv=None) -> int:
    from avader.runs import machine_info, write_json_atomic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="seconds: untrained tiny model, 4 blends of 32x32")
    parser.add_argument("--run", default=str(ROOT / "data" / "runs" / "quick"), help="run directory with model.keras")
    parser.add_argument("--blends", type=Path, help="blend set (default: simulate one with --seed)")
    parser.add_argument("--n", type=int, help="blends to use (default: the run's analysis.n_blends)")
    parser.add_argument("--steps", type=int, help="optimiser steps (default: the run's analysis.deblend_steps)")
    parser.add_argument("--prior-weight", type=float,
                        help="mixture prior in the fit (default: the run's analysis.deblend_prior_weight)")
    parser.add_argument("--augment", type=int, choices=(1, 2, 4),
                        help="mirrored fits averaged per blend (default: the run's analysis.deblend_augment)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the simulated blend set (default 1)")
    parser.add_argument("--methods", help="comma-separated (default: avader, avader_peaks when avader uses a "
                                          "learned detector, avader_true_centres, photutils, sep)")
    parser.add_argument("--detector", choices=("auto", "learned", "peaks"), default="auto",
                        help="centres of the avader method: the run's detector.keras (auto: when it has one)")
    parser.add_argument("--figure", action="store_true", help="also write figures/deblend_benchmark.png")
    parser.add_argument("--out", type=Path, help="JSON file (default benchmarks/results/deblend[_smoke].json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.time()
    detector = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.smoke:
            model, run, n, steps = _smoke_model(), "untrained smoke model", args.n or 4, args.steps or 5
            prior_weight = 1.0 if args.prior_weight is None else args.prior_weight
            augment = args.augment or 1
        else:
            from avader.config import AnalysisConfig
            from avader.detector import resolve_detector
            from avader.runs import RunDir
            from avader.training import load_run_model

            run_dir = RunDir(args.run)
            model = load_run_model(run_dir.path)
            detector = resolve_detector(run_dir.path, args.detector)
            analysis = run_dir.load_config().analysis if run_dir.exists() else AnalysisConfig()
            run = str(run_dir.path)
            n = args.n or analysis.n_blends
            steps = args.steps or analysis.deblend_steps
            prior_weight = analysis.deblend_prior_weight if args.prior_weight is None else args.prior_weight
            augment = args.augment or analysis.deblend_augment
        methods = (tuple(m for m in args.methods.split(",") if m) if args.methods else
                   ("avader",) + (("avader_peaks",) if detector is not None else ()) +
                   ("avader_true_centres", "photutils", "sep"))
        blends = args.blends or Path(tmp) / f"blends_{n}_{args.seed}.fits"
        results = run_benchmark(model, blends, n, steps, methods, seed=args.seed, detector=detector,
                                prior_weight=prior_weight, augment=augment)
    results.update(run=run, blends=str(args.blends) if args.blends else f"simulated, seed {args.seed}",
                   seconds=round(time.time() - started, 1), load_average=list(os.getloadavg()),
                   machine=machine_info(with_devices=True))
    out = args.out or RESULTS / ("deblend_smoke.json" if args.smoke else "deblend.json")
    write_json_atomic(out, results)
    log.info("wrote %s", out)
    for method, summary in results["methods"].items():
        bright, close = summary["overall"]["bright"], summary["close"]["bright"]
        log.info("%-20s SSIM %s |dF/F| %s (close: %s, %s) %.2f s/blend (CPU %.2f)", method, bright["ssim"],
                 bright["abs_dflux"], close["ssim"], close["abs_dflux"], summary["seconds_per_blend"],
                 summary["cpu_seconds_per_blend"])
    if "bar" in results:
        log.info("bar: %s", results["bar"])
    if args.figure:
        from avader.plotting import plot_deblend_benchmark, save_figure

        save_figure(plot_deblend_benchmark(results), "deblend_benchmark", formats=("png",))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
