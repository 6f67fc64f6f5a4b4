"""The ``avader`` command: thin subcommands over the library.

Every subcommand has ``--help`` with examples, honours the global ``--quiet``, exits 0 on
success and, on an expected problem, prints one line ``avader: error: ...`` and exits 2
without a traceback. ``python -m avader`` is the same command.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from . import paths
from .errors import AvaderError

__all__ = ["main", "build_parser"]

log = logging.getLogger("avader.cli")

_COMMANDS = []


def command(name: str, help: str, epilog: str = ""):
    """Register ``fn(args)`` as subcommand ``name``; ``fn.arguments(parser)`` adds its options."""

    def register(fn):
        _COMMANDS.append((name, help, epilog, fn))
        return fn

    return register


def _add_config_options(parser, profile_default="quick"):
    parser.add_argument("--profile", default=profile_default,
                        help=f"profile name or YAML file (default: {profile_default})")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one configuration value; repeatable (e.g. --set training.batch_size=64)")
    parser.add_argument("--seed", type=int, help="the run's seed (overrides the profile's)")


def _config(args):
    from .config import load_config

    overrides = list(args.overrides)
    if getattr(args, "seed", None) is not None:
        overrides.append(f"seed={args.seed}")
    return load_config(args.profile, overrides)


def _progress(args) -> bool:
    return not args.quiet


# ---------------------------------------------------------------- info
def _info_args(p):
    p.add_argument("--json", action="store_true", help="print the machine description as JSON")


@command("info", "versions, devices and thread settings", "example:\n  avader info")
def cmd_info(args):
    import json

    from .runs import machine_info

    info = machine_info(with_devices=True)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    versions = info["versions"]
    print(f"avader {versions['avader']}  (Python {versions['python']})")
    print(f"TensorFlow {versions['tensorflow']}  Keras {versions['keras']}  NumPy {versions['numpy']}")
    print(f"CPU: {info['cpu_model']}, {info['cpu_cores']} cores, bfloat16: {'yes' if info['cpu_bf16'] else 'no'}; "
          f"memory {info['memory_gib']} GiB")
    print(f"GPUs: {', '.join(info['gpus']) if info['gpus'] else 'none'}")
    print(f"threads: intra-op {info['tf_intra_op_threads'] or 'auto'}, inter-op {info['tf_inter_op_threads'] or 'auto'}"
          f"  (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")
    print(f"platform: {info['platform']}")
    return 0


cmd_info.arguments = _info_args


# ---------------------------------------------------------------- simulate
def _simulate_args(p):
    p.add_argument("--n", type=int, required=True, help="number of galaxies (or blends)")
    p.add_argument("--size", type=int, default=64, help="pixels per side (default 64)")
    p.add_argument("--seed", type=int, default=0, help="catalogue seed; image i depends only on (seed, i)")
    p.add_argument("--out", type=Path, required=True, help="GalaxySet file to write")
    p.add_argument("--workers", type=int, help="processes (default: all cores)")
    p.add_argument("--shard", help="k/n: render only the k-th of n contiguous blocks of ids")
    p.add_argument("--first-id", type=int, default=0,
                   help="id of the first galaxy (default 0); disjoint ids of one seed are independent draws")
    p.add_argument("--blends", action="store_true", help="blend set: 2-3 overlapping galaxies with their components")
    p.add_argument("--profile", help="take the simulation settings from this profile (default: built-in defaults)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="simulation.KEY=VALUE",
                   help="override a simulation setting; repeatable")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


@command("simulate", "simulate SDSS-like galaxies with ground truth (GalSim) into a GalaxySet",
         "examples:\n  avader simulate --n 3000 --size 64 --out data/processed/sims.fits\n"
         "  avader simulate --n 200000 --size 128 --shard 0/4 --out part0.fits\n"
         "  avader simulate --n 2000 --size 64 --first-id 2000000 --out unseen.fits\n"
         "  avader simulate --n 500 --size 64 --blends --out blends.fits")
def cmd_simulate(args):
    from .simulate import SimulationConfig, simulate

    sim_config = SimulationConfig()
    if args.profile or args.overrides:
        from .config import load_config

        sim_config = load_config(args.profile or "quick", args.overrides).simulation
    path = simulate(args.n, image_size=args.size, seed=args.seed, config=sim_config, out=args.out,
                    workers=args.workers, shard=args.shard, blends=args.blends, overwrite=args.overwrite,
                    first_id=args.first_id,
                    progress=_progress(args))
    log.info("wrote %s", path)
    return 0


cmd_simulate.arguments = _simulate_args


# ---------------------------------------------------------------- fetch and prepare
def _fetch_args(p):
    p.add_argument("name", choices=("galaxy10", "gz2-images", "gz2-labels", "published-weights"), help="what to download")
    p.add_argument("--dest", type=Path, help="folder (default: data/raw/NAME)")
    p.add_argument("--url", help="download from this URL instead (single-file data sets)")
    p.add_argument("--sha256", help="expected SHA-256 of the file (single-file data sets)")


@command("fetch", "download a public data set or the published weights, resumable and checksummed",
         "examples:\n  avader fetch published-weights\n  avader fetch galaxy10 --dest /scratch/galaxy10\n"
         "  avader fetch gz2-images && avader fetch gz2-labels")
def cmd_fetch(args):
    from .fetch import fetch

    path = fetch(args.name, dest=args.dest, url=args.url, sha256=args.sha256, progress=_progress(args))
    print(path)
    return 0


cmd_fetch.arguments = _fetch_args


def _prepare_args(p):
    p.add_argument("source", choices=("gz2", "kaggle", "galaxy10", "images"), help="kind of input")
    p.add_argument("--out", type=Path, required=True, help="GalaxySet file to write")
    p.add_argument("--size", type=int, default=128, help="output pixels per side (default 128, as the paper)")
    p.add_argument("--recipe", choices=("astrovader", "asinh"), help="preprocessing recipe (default astrovader)")
    p.add_argument("--crop-fraction", type=float, help="centre crop as a fraction of the input (paper: 0.75)")
    p.add_argument("--on-error", choices=("fail", "skip"), default="fail",
                   help="stop at the first bad image (default) or skip bad images and list them in a report")
    p.add_argument("--workers", type=int, help="decoding processes (default: all cores)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--images", type=Path, help="gz2, kaggle: folder of JPEG images")
    p.add_argument("--mapping", type=Path, help="gz2: gz2_filename_mapping.csv")
    p.add_argument("--catalog", type=Path, help="gz2: Hart et al. 2016 gz2_hart16.csv(.gz); images: CSV joined on the file stem")
    p.add_argument("--split", help="gz2: split file (dr7objid,split) or 'paper' for the paper's split")
    p.add_argument("--columns", choices=("paper", "all"), help="gz2: catalogue columns to keep")
    p.add_argument("--labels", type=Path, help="kaggle: training_solutions_rev1.csv")
    p.add_argument("--input", type=Path, help="galaxy10: Galaxy10.h5; images: folder of JPEG/PNG/FITS cutouts")
    p.add_argument("--id-column", help="images: catalogue column holding the file stem")


_PREPARE_OPTIONS = {"gz2": ("images", "mapping", "catalog", "split", "columns"), "kaggle": ("images", "labels"),
                    "galaxy10": ("input",), "images": ("input", "catalog", "id_column")}


@command("prepare", "turn GZ2, Kaggle Galaxy Zoo, Galaxy10 or an image folder into GalaxySets (paper preprocessing)",
         "examples:\n  avader prepare gz2 --images data/raw/gz2-images/images --mapping data/raw/gz2-images/gz2_filename_mapping.csv \\\n"
         "      --catalog data/raw/gz2-labels/gz2_hart16.csv.gz --split paper --out data/processed/gz2.fits\n"
         "  avader prepare galaxy10 --input data/raw/galaxy10/Galaxy10.h5 --size 64 --out galaxy10.fits\n"
         "  avader prepare images --input cutouts/ --catalog cutouts.csv --on-error skip --out mine.fits")
def cmd_prepare(args):
    from .sources import prepare

    options = {k: getattr(args, k) for k in _PREPARE_OPTIONS[args.source] if getattr(args, k) is not None}
    for key in ("recipe", "crop_fraction"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    written = prepare(args.source, args.out, size=args.size, on_error=args.on_error, workers=args.workers,
                      progress=_progress(args), overwrite=args.overwrite, **options)
    for path in written:
        print(path)
    return 0


cmd_prepare.arguments = _prepare_args


# ---------------------------------------------------------------- train
def _train_args(p):
    _add_config_options(p)
    p.add_argument("--data", type=Path, help="GalaxySet to train on (default: the profile's simulated default)")
    p.add_argument("--run", help="run name under data/runs or a folder (default: the profile name)")
    p.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="start afresh in a non-empty run directory")
    p.add_argument("--precision", choices=("float32", "mixed_bfloat16", "mixed_float16", "auto"),
                   help="numeric precision (default: the profile's)")


@command("train", "train AstroVaDEr: VAE warm-up, mixture initialisation, annealed VaDE",
         "examples:\n  avader train --profile quick --run quick\n"
         "  avader train --profile paper --data data/processed/gz2_train.fits --run paper\n"
         "  avader train --profile quick --run quick --resume\n"
         "  avader train --profile smoke --set training.warmup_epochs=3 --precision mixed_bfloat16")
def cmd_train(args):
    from .training import train

    config = _config(args)
    from .data import ensure_dataset

    data = ensure_dataset(config, args.data, progress=_progress(args))
    run = train(config, data=data, run_dir=args.run, resume=args.resume, overwrite=args.overwrite,
                precision=args.precision, progress=_progress(args))
    log.info("run directory: %s", run.path)
    return 0


cmd_train.arguments = _train_args


# ---------------------------------------------------------------- import-weights
def _import_args(p):
    p.add_argument("weights", type=Path, help="the original Keras 2.3.1 weights file (saved_weights.h5)")
    p.add_argument("--out", required=True, help="run directory (name under data/runs or a folder)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory's files")


@command("import-weights", "convert the original AstroVaDEr weights into a run directory (published profile)",
         "examples:\n  avader fetch published-weights\n"
         "  avader import-weights data/raw/published-weights/astrovader_saved_weights.h5 --out published")
def cmd_import_weights(args):
    from .training import import_published_run

    run = import_published_run(args.weights, args.out, overwrite=args.overwrite)
    log.info("run directory: %s", run.path)
    return 0


cmd_import_weights.arguments = _import_args


# ---------------------------------------------------------------- cluster
def _cluster_args(p):
    p.add_argument("--run", required=True, help="run name under data/runs or a folder (trained or imported)")
    p.add_argument("--data", type=Path, help="GalaxySet to analyse (default: the run's training data)")
    p.add_argument("--labels", help="catalogue column to score against (default: detected: family, label, GZ2 votes)")
    p.add_argument("--no-baselines", action="store_true", help="skip the baseline clusterings")
    p.add_argument("--overwrite", action="store_true", help="replace an existing clusters.fits")


@command("cluster", "assign galaxies to mixture components; metrics against truth, labels and baselines",
         "examples:\n  avader cluster --run quick\n  avader cluster --run published --data data/processed/gz2_test.fits\n"
         "  avader cluster --run quick --labels family --overwrite")
def cmd_cluster(args):
    from .clustering import cluster_run

    metrics = cluster_run(args.run, data=args.data, overwrite=args.overwrite, progress=_progress(args),
                          baselines=not args.no_baselines, labels=args.labels)
    for target, methods in (metrics.get("summary") or {}).items():
        if isinstance(methods, dict) and "nmi" in methods:
            log.info("%s: NMI %s", target, ", ".join(f"{k} {v:.3f}" for k, v in methods["nmi"].items() if v is not None))
    log.info("wrote clusters.fits and metrics.json in the run directory %s", args.run)
    return 0


cmd_cluster.arguments = _cluster_args


# ---------------------------------------------------------------- generate
def _generate_args(p):
    p.add_argument("--run", required=True, help="run name under data/runs or a folder holding model.keras")
    p.add_argument("--n", type=int, help="number of galaxies (components drawn from the mixture weights)")
    p.add_argument("--per-component", type=int, help="instead of --n: this many from every component (paper: 45)")
    p.add_argument("--component", type=int, help="draw only from this component")
    p.add_argument("--sampler", choices=("mixture", "expost"), default="mixture",
                   help="mixture: z ~ N(u_c, scale * lambda_c), the paper's; expost: a Gaussian mixture fitted to "
                        "each component's latent means of the training data (expost.npz in the run, fitted if missing)")
    p.add_argument("--scale", type=float, help="variance scale (default 0.5 for the mixture as in the paper, 1 for expost)")
    p.add_argument("--reject-below", type=float, help="keep only samples whose own-component responsibility exceeds this")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--dtype", choices=("float32", "uint8"), default="float32", help="stored pixel type")
    p.add_argument("--out", type=Path, required=True, help="GalaxySet file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


@command("generate", "generate synthetic galaxies from mixture components into a GalaxySet",
         "examples:\n  avader generate --run quick --n 1000 --out synthetic.fits\n"
         "  avader generate --run published --per-component 45 --seed 1 --out paper_generation.fits\n"
         "  avader generate --run quick --n 200 --component 3 --reject-below 0.9 --out c3.fits\n"
         "  avader generate --run quick --n 1000 --sampler expost --out synthetic_expost.fits")
def cmd_generate(args):
    from .generation import generate_run

    if (args.n is None) == (args.per_component is None):
        raise AvaderError("give exactly one of --n and --per-component")
    path = generate_run(args.run, args.n, args.out, component=args.component, scale=args.scale, seed=args.seed,
                        overwrite=args.overwrite, reject_below=args.reject_below, per_component=args.per_component,
                        dtype=args.dtype, sampler=args.sampler)
    print(path)
    return 0


cmd_generate.arguments = _generate_args


# ---------------------------------------------------------------- deblend
def _deblend_args(p):
    p.add_argument("--run", required=True, help="run name under data/runs or a folder holding model.keras")
    p.add_argument("--blends", type=Path, required=True, help="GalaxySet of blended images (e.g. avader simulate --blends)")
    p.add_argument("--out", type=Path, help="file to write: separated sources (or, with --benchmark, the JSON results)")
    p.add_argument("--benchmark", action="store_true",
                   help="score against the blend set's truth, with photutils and sep baselines (JSON and a figure)")
    p.add_argument("--n", type=int, help="benchmark: only the first N blends")
    p.add_argument("--steps", type=int, help="optimiser steps per blend (default: the run's analysis.deblend_steps)")
    p.add_argument("--prior-weight", type=float, default=None,
                   help="weight of the mixture prior against chi^2 / 2 in the fit "
                        "(default: the run's analysis.deblend_prior_weight)")
    p.add_argument("--model-error", type=float, default=None,
                   help="fractional error of the decoded templates, added to the pixel noise in the fit "
                        "(default 0.3; 0: pixel noise alone); for the separation and the benchmark")
    p.add_argument("--symmetry", type=float, default=None,
                   help="sigma of the refine pass's search for light breaking the main galaxy's symmetry "
                        "(default 8; 0: off)")
    p.add_argument("--shares", choices=("symmetric", "model"), default=None,
                   help="how fluxes share each pixel among a blend's sources: in proportion to the fitted models "
                        "capped by each source's symmetric light (symmetric, default) or to the models alone")
    p.add_argument("--augment", type=int, choices=(1, 2, 4), default=None,
                   help="fits per blend, averaged: as observed, and mirrored left-right (2), and also top-bottom "
                        "and by half a turn (4) (default: the run's analysis.deblend_augment)")
    p.add_argument("--detector", choices=("auto", "learned", "peaks"), default="auto",
                   help="source centres: the run's learned detector (avader train-detector), peak detection, "
                        "or auto (the learned one when the run has it; default)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


@command("deblend", "separate blended galaxies with the generative model; benchmark against photutils and sep",
         "examples:\n  avader simulate --n 200 --size 64 --blends --out blends.fits\n"
         "  avader deblend --run quick --blends blends.fits --out separated.fits\n"
         "  avader deblend --run quick --blends blends.fits --benchmark --out deblend.json")
def cmd_deblend(args):
    from .deblending import benchmark_run, deblend_run

    options = {key: value for key, value in (("model_error", args.model_error), ("symmetry", args.symmetry),
                                             ("shares", args.shares)) if value is not None}
    if args.benchmark:
        results = benchmark_run(args.run, args.blends, out=args.out, n=args.n, steps=args.steps,
                                overwrite=args.overwrite, progress=_progress(args), deblend_options=options,
                                detector=args.detector, prior_weight=args.prior_weight, augment=args.augment)
        path = results["path"]
        log.info("acceptance checks: %s", results.get("bar"))
    else:
        if args.out is None:
            raise AvaderError("--out: needed to write the separated sources")
        path = deblend_run(args.run, args.blends, args.out, steps=args.steps, overwrite=args.overwrite,
                           progress=_progress(args), detector=args.detector, prior_weight=args.prior_weight,
                           augment=args.augment, **options)
    print(path)
    return 0


cmd_deblend.arguments = _deblend_args


# ---------------------------------------------------------------- train-detector
def _detector_args(p):
    p.add_argument("--run", required=True, help="run name under data/runs or a folder holding config.yaml")
    p.add_argument("--blends", type=int, help="simulated training blends (default: the run's analysis.detector_blends)")
    p.add_argument("--epochs", type=int, help="training epochs (default: the run's analysis.detector_epochs)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing detector.keras")


@command("train-detector", "train the learned source detector of the deblender on simulated blends",
         "examples:\n  avader train-detector --run quick\n  avader train-detector --run quick --blends 4000 --epochs 4 "
         "--overwrite")
def cmd_train_detector(args):
    from .detector import train_detector
    from .runs import RunDir

    info = train_detector(args.run, n_blends=args.blends, epochs=args.epochs, overwrite=args.overwrite,
                          progress=_progress(args))
    valid = info["validation"]
    log.info("validation blends: precision %.3f, recall %.3f, exactly right %.3f (threshold %.2f)",
             valid["precision"] or 0.0, valid["recall"] or 0.0, valid["exact"], info["threshold"])
    print(RunDir(args.run) / info["file"])
    return 0


cmd_train_detector.arguments = _detector_args


# ---------------------------------------------------------------- reproduce
def _reproduce_args(p):
    p.add_argument("--profile", default="quick", help="smoke, quick (default), paper, published, or a YAML file")
    p.add_argument("--data", type=Path, help="GalaxySet to use instead of the profile's simulated default")
    p.add_argument("--only", action="append", metavar="NN", help="run only notebook NN (repeatable)")
    p.add_argument("--run", help="run name under data/runs or a folder (default: the profile name)")
    p.add_argument("--seed", type=int, help="the run's seed")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="configuration override passed to every notebook; repeatable")


@command("reproduce", "run the notebooks 01-06 with papermill and rebuild every figure",
         "examples:\n  avader reproduce --profile quick\n  avader reproduce --profile smoke --run ci\n"
         "  avader reproduce --profile quick --only 04 --only 05")
def cmd_reproduce(args):
    from .reproduce import reproduce

    report = reproduce(args.profile, data=args.data, only=args.only, run=args.run, seed=args.seed,
                       overrides=args.overrides, progress=_progress(args))
    for name, item in report["notebooks"].items():
        log.info("%s: %.0f s", name, item["seconds"])
    log.info("figures in %s; executed notebooks in %s/notebooks", paths.figures_dir(), report["run_dir"])
    return 0


cmd_reproduce.arguments = _reproduce_args


# ---------------------------------------------------------------- entry point
def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="avader",
        description="AstroVaDEr: cluster, generate and deblend galaxies with a Gaussian-mixture VAE.",
        epilog="examples:\n  avader info\n  avader simulate --n 3000 --size 64 --out sims.fits\n"
               "  avader reproduce --profile quick\n\nRun 'avader COMMAND --help' for each command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars or info messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text, epilog, fn in _COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        if hasattr(fn, "arguments"):
            fn.arguments(p)
        p.set_defaults(func=fn)
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="avader: %(message)s", stream=sys.stderr)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except AvaderError as err:
        print(f"avader: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("avader: interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, IsADirectoryError, PermissionError) as err:
        print(f"avader: error: {err.filename}: {err.strerror}", file=sys.stderr)
        return 2


def path_arg(value: str) -> Path:
    """argparse type for an input file that must exist."""
    path = Path(value)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{value}: no such file or directory")
    return path
