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
