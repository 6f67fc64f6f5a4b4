"""Catalogue inference benchmark: images per second and peak memory of ``avader.clustering.assign``.

The paper's network (``avader.model.ModelConfig()``: 128x128, filters 64/64/16, 20-d latent space,
12 components; weights untouched, since speed does not depend on them) encodes a memory-mapped
GalaxySet written with ``GalaxySetWriter``, computing latent means, responsibilities and components
in batches, as ``avader cluster`` does. Measured in float32 and ``mixed_bfloat16``
(``keras.mixed_precision``), each in a fresh subprocess; the first batch (tracing) is excluded
from the timing.

Memory: the same float32 inference on N and on 10N images, each run in its own subprocess,
started by a small wrapper process that reports ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``
(so each number is the peak resident set of exactly one run). Memory flat in N means the 10N
peak is close to the N peak: the per-galaxy outputs add (20 + 20 + 12) * 4 bytes per galaxy.

Usage::

    python benchmarks/bench_inference.py --smoke   # seconds: N = 16
    python benchmarks/bench_inference.py           # N = 500 (and 5000 for the memory run)

Writes ``benchmarks/results/inference.json`` (``inference_smoke.json`` with ``--smoke``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common, also when a test loads this file by path
import _common as common

IMAGE_SIZE = 128  # pixels (paper)


def write_data(path: Path, n: int, seed: int = 0, chunk: int = 500) -> Path:
    """A uint8 GalaxySet of ``n`` 128x128 images (Gaussian blobs plus noise), streamed to disk."""
    from avader.data import GalaxySetWriter

    y, x = np.mgrid[:IMAGE_SIZE, :IMAGE_SIZE] - (IMAGE_SIZE - 1) / 2
    with GalaxySetWriter(path, n=n, image_shape=(IMAGE_SIZE, IMAGE_SIZE), dtype="uint8", overwrite=True) as writer:
        for start in range(0, n, chunk):
            rng = np.random.default_rng([seed, start])
            m = min(chunk, n - start)
            width = rng.uniform(4, 20, m)[:, None, None]
            block = np.exp(-0.5 * (x**2 + y**2)[None] / width**2) + rng.normal(0, 0.03, (m, IMAGE_SIZE, IMAGE_SIZE))
            writer.write(start, np.clip(block, 0, 1).astype(np.float32))
        writer.set_catalog({"id": np.arange(n, dtype=np.int64)})
    return path


def child(args) -> None:
    """One measurement in this process: build the paper model, encode ``args.data``, write JSON."""
    import keras

    from avader.clustering import assign
    from avader.data import GalaxySet
    from avader.model import ModelConfig, build_vade

    keras.mixed_precision.set_global_policy(args.precision)
    model = build_vade(ModelConfig(), seed=0)
    galaxies = GalaxySet.read(args.data, validate=False)
    assign(model, galaxies, batch_size=args.batch_size, progress=False, rows=np.arange(min(args.batch_size, len(galaxies))))
    rss_setup = common.status_mib("VmRSS")
    started = time.perf_counter()
    out = assign(model, galaxies, batch_size=args.batch_size, progress=False)
    seconds = time.perf_counter() - started
    result = {"precision": args.precision, "n": len(galaxies), "batch_size": args.batch_size, "seconds": round(seconds, 3),
              "images_per_second": round(len(galaxies) / seconds, 2), "rss_after_setup_mib": round(rss_setup, 1),
              "vmhwm_mib": round(common.status_mib("VmHWM"), 1),
              "components_used": int(np.unique(out["component"]).size)}
    Path(args.json).write_text(json.dumps(result))


def measure(data: Path, precision: str, batch_size: int) -> dict:
    """Run :func:`child` in a subprocess under the rusage wrapper; its result plus ``peak_rss_mib``."""
    options = ["--data", str(data), "--precision", precision, "--batch-size", str(batch_size)]
    result, peak = common.run_wrapped_child(__file__, options, f"inference child ({precision}, {data})",
                                            TF_CPP_MIN_LOG_LEVEL="2")
    result["peak_rss_mib"] = peak
    logging.info("%s N=%d: %.1f images/s, peak RSS %.0f MiB", precision, result["n"], result["images_per_second"],
                 result["peak_rss_mib"])
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (seconds)")
    parser.add_argument("--n", type=int, help="images of the throughput runs (default 500; smoke 16)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per inference batch")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    parser.add_argument("--out", type=Path, help="result file")
    common.add_child_options(parser, "--precision")
    args = common.parse_args(parser, argv, child)
    if args is None:
        return 0
    from avader.runs import machine_info

    n = args.n or (16 if args.smoke else 500)
    batch = min(args.batch_size, n)
    load_before = common.load_average()
    started = time.time()
    with tempfile.TemporaryDirectory(dir=common.RESULTS.parent) as tmp:
        small = write_data(Path(tmp) / "n.fits", n)
        large = write_data(Path(tmp) / "10n.fits", 10 * n)
        runs = [measure(small, precision, batch) for precision in args.precisions.split(",")]
        big = measure(large, "float32", batch)
    small_f32 = next(r for r in runs if r["precision"] == "float32")
    result = {
        "benchmark": "catalogue inference (avader.clustering.assign): latent means, responsibilities, components",
        "command": common.command_line(__file__, argv),
        "mode": "smoke" if args.smoke else "full",
        "model": "paper network, avader.model.ModelConfig() (128x128, filters 64/64/16, latent 20, K 12)",
        "data": "memory-mapped uint8 GalaxySet written with GalaxySetWriter",
        "image_size": IMAGE_SIZE,
        "batch_size": batch,
        "throughput": runs + [big],
        "memory": {"n": n, "peak_rss_mib_n": small_f32["peak_rss_mib"], "n_10": 10 * n,
                   "peak_rss_mib_10n": big["peak_rss_mib"],
                   "ratio_10n_to_n": round(big["peak_rss_mib"] / small_f32["peak_rss_mib"], 3),
                   "image_bytes_10n_mib": round(10 * n * IMAGE_SIZE**2 / 2**20, 1)},
        "load_average_before": load_before,
        "load_average_after": common.load_average(),
        "seconds": round(time.time() - started, 1),
        "machine": machine_info(with_devices=True),
    }
    out = args.out or common.RESULTS / ("inference_smoke.json" if args.smoke else "inference.json")
    common.write_result(out, result)
    logging.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
