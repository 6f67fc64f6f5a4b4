"""Experiment: try phase-3 (VaDE) settings from one finished warm-up, without training it again.

Copies the run ``SRC`` (trained with ``training.vade_periods=0``, i.e. warm-up only) to ``DST``,
writes ``DST/config.yaml`` with the overrides, resumes the copy through the mixture
initialisation and the VaDE phase, clusters it (:func:`avader.cluster_run`) and prints each
method's NMI with ``family``, its ``factor_nmi`` and its cluster sizes.

Usage::

    python benchmarks/experiments/vade_from_warmup.py SRC DST training.vade_periods=2 [key=value ...]
"""

import json
import logging
import shutil
import sys

from avader import paths
from avader.clustering import cluster_run
from avader.config import load_config
from avader.runs import RunDir
from avader.training import train


def main(argv) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    src, dst, *overrides = argv
    logging.basicConfig(level=logging.WARNING)
    source, target = paths.runs_dir() / src, paths.runs_dir() / dst
    config = load_config(str(source / "config.yaml"), overrides)
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    for name in ("model.keras", "metrics.json", "clusters.fits"):
        (target / name).unlink(missing_ok=True)
    RunDir(target).write_config(config)  # keeps the copied manifest (inputs, warm-up timings)
    train(config, run_dir=target, resume=True, progress=False)
    cluster_run(target, progress=False, overwrite=True)
    methods = json.loads((target / "metrics.json").read_text())["clustering"]["methods"]
    for name, m in methods.items():
        factors = {k: round(v, 4) for k, v in m["factor_nmi"].items()}
        print(dst, name, round(m["labels"]["family"]["nmi"], 4), factors, m["sizes"], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
