"""Training benchmark: the paper network's training speed against the matrix-multiply peak, mixed precision, memmap input.

Every measurement runs in a fresh subprocess (started, as in ``bench_inference.py``, by a small
wrapper that reports the child's peak resident set), so a ``keras.mixed_precision`` policy never
leaks from one measurement into the next:

``matmul``    the peak: ``tf.matmul`` of two square random matrices (n = 2048; 1024 in smoke mode),
              float32 and bfloat16, warmed up, then repeated for about 1 s (0.25 s in smoke mode);
              GFLOP/s = 2 n^3 / seconds per product, best of 3 repeats; measured first and again last,
              the peak is the better of the two runs (both are recorded, with every repeat).
``train``     one precision: the network (``avader.model.build_vade``), the Adam optimiser of
              ``avader.training._compile`` (phase 3: gradients clipped) and ``set_mode("vade")``,
              under the policy ``avader.training.resolve_precision`` gives, as ``avader.training.train``
              sets it; ``model.fit`` on one fixed in-memory batch repeated (no input pipeline), timed by
              a callback from the end of the last warm-up step (tracing) to the end of the last step.
              FLOPs of one training step: TensorFlow's graph profiler
              (``tf.compat.v1.profiler.profile`` with ``ProfileOptionBuilder.float_operation()``) on the
              concrete function of ``model.train_step`` at the benchmark's batch shape; the analytic count
              (2 H_out W_out K^2 C_in C_out per convolution and 2 in out per dense layer, forward; x3 for
              forward, input gradients and weight gradients) is recorded beside it as a cross-check, and
              used instead when the profiler fails (``flops.method`` says which).
``encode``    one precision: the latent means, log-variances and responsibilities of fixed in-memory
              batches of 64, with the very step ``avader.clustering.assign`` runs per batch
              (``avader.clustering._inference_step``), traced and warmed up before the timing.
``io``        float32 training fed by ``avader.data.make_dataset`` (shuffled, flipped, as
              ``avader.training`` feeds it) from a GalaxySet memory-mapped from its file (``memmap``),
              against the same images loaded into memory (``memory``: ``GalaxySet.from_arrays`` of the
              file's array, same pipeline). One process and one traced step for both; segments
              memmap, memory, memmap, memory, each of ``steps // 2`` timed steps after 2 warm-up steps,
              best segment of each. The file (uint8, in a temporary folder under ``benchmarks/``) was
              just written, so its pages are in the page cache: the state of every epoch after the first
              of a run whose images fit in memory.

The bars (issue "Benchmarks"): float32 training reaches at least 80% of the float32 matmul peak
of the same run; ``mixed_bfloat16`` trains at least 1.4x and encodes at least 1.8x faster than
float32 in the same run; training from the memory-mapped file takes at most 1.05x the time per
step of training from memory. Smoke mode uses a small network at 32x32 and says nothing about them.
Each training run also records ``fraction_of_matmul_peak``: its GFLOP/s over the matmul peak of
its compute dtype (float32, or bfloat16 under ``mixed_bfloat16``).

Usage::

    python benchmarks/bench_training.py --smoke   # about a minute: 32x32, filters 16/16/8, 3 steps
    python benchmarks/bench_training.py           # paper network, batch 32, 24 steps: 6-9 minutes on 2 idle cores

Full mode runs about 125 training steps of the paper network (27 per precision, 4 x 14 from the
file and from memory; 2.5-4 s each in float32 on 2 cores), 2 passes of 512 encoded images per precision,
about 16 s of matrix products, plus about 10 s of start-up and tracing per subprocess (7 of them).

Writes ``benchmarks/results/training.json`` (``training_smoke.json`` with ``--smoke``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common, also when a test loads this file by path
import _common as common

ENCODE_BATCH = 64  # images per inference batch (as bench_inference.py)
IO_WARMUP = 2  # untimed steps at the start of each memmap / memory segment
BARS = {"float32_fraction_of_matmul_peak": 0.8, "mixed_training_speedup": 1.4, "mixed_encoding_speedup": 1.8,
        "memmap_to_memory_seconds_per_step": 1.05}


def model_config(smoke: bool):
    """The paper network (``ModelConfig()``), or a small one at 32x32 for smoke runs."""
    from avader.config import ModelConfig

    return ModelConfig(image_size=32, filters=(16, 16, 8)) if smoke else ModelConfig()


def blobs(n: int, size: int, seed: int = 0) -> np.ndarray:
    """``n`` uint8 images of Gaussian blobs plus noise (galaxy-like enough for timing)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    width = rng.uniform(size / 32, size / 6, n)[:, None, None]
    images = np.exp(-0.5 * (x**2 + y**2)[None] / width**2) + rng.normal(0, 0.03, (n, size, size))
    return np.clip(np.rint(255 * images), 0, 255).astype(np.uint8)


def write_data(path: Path, n: int, size: int, seed: int = 0) -> Path:
    """A uint8 GalaxySet file of ``n`` blob images, written with ``GalaxySetWriter``."""
    from avader.data import GalaxySetWriter

    with GalaxySetWriter(path, n=n, image_shape=(size, size), dtype="uint8", overwrite=True) as writer:
        writer.write(0, blobs(n, size, seed))
        writer.set_catalog({"id": np.arange(n, dtype=np.int64)})
    return path


def analytic_flops(config, batch: int) -> dict:
    """FLOPs of the convolutions and dense layers of one training step of the conv network, from the shapes."""
    forward = 0
    size, channels = config.image_size, config.channels
    for filters, kernel in zip(config.filters, config.kernel_sizes, strict=True):
        for _ in range(2):
            forward += 2 * size * size * kernel * kernel * channels * filters
            channels = filters
        size //= 2
    forward += 2 * (2 * size * size * channels * config.latent_dim)  # latentmean, latentlog_var
    forward += 2 * config.latent_dim * size * size * config.filters[-1]  # FC3
    channels = config.filters[-1]
    for filters in reversed(config.filters):
        for _ in range(2):
            forward += 2 * size * size * config.decoder_kernel_size**2 * channels * filters
            channels = filters
        size *= 2
    forward += 2 * size * size * config.output_kernel_size**2 * channels * config.channels
    return {"forward_per_image": forward, "train_step": 3 * forward * batch}


def profiler_flops(model, batch: int) -> dict:
    """FLOPs of one ``train_step`` graph by op type, from TensorFlow's graph profiler."""
    import tensorflow as tf

    size, channels = model.model_config.image_size, model.model_config.channels
    graph = tf.function(model.train_step).get_concrete_function(
        tf.TensorSpec((batch, size, size, channels), tf.float32)).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph, cmd="op", options=options)
    by_type = {}

    def walk(node):  # the "op" view nests each op type under the previous one; float_ops is the type's own
        for child in node.children:
            if child.float_ops:
                by_type[child.name] = by_type.get(child.name, 0) + int(child.float_ops)
            walk(child)

    walk(profile)
    matrix = ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter", "MatMul", "BatchMatMulV2")
    return {"total": int(profile.total_float_ops), "matrix": sum(by_type.get(name, 0) for name in matrix),
            "by_op_type": dict(sorted(by_type.items(), key=lambda item: -item[1]))}


def _child_matmul(args) -> dict:
    import tensorflow as tf

    n = 1024 if args.smoke else 2048
    seconds = 0.25 if args.smoke else 1.0
    out = {}
    for dtype in ("float32", "bfloat16"):
        a = tf.cast(tf.random.stateless_normal((n, n), seed=(0, 1)), dtype)
        b = tf.cast(tf.random.stateless_normal((n, n), seed=(0, 2)), dtype)
        for _ in range(3):
            c = tf.matmul(a, b)
        float(c[0, 0])
        repeats = []
        for _ in range(3):
            count, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                c = tf.matmul(a, b)
                count += 1
            float(c[0, 0])
            repeats.append(2 * n**3 * count / (time.perf_counter() - started) / 1e9)
        out[dtype] = {"n": n, "gflops": round(max(repeats), 1), "repeats_gflops": [round(r, 1) for r in repeats],
                      "seconds_per_repeat": seconds}
    return out


def _build(args, precision: str):
    """The benchmark's model under ``precision`` (as avader.training sets it), compiled for phase 3."""
    import keras

    from avader.config import TrainingConfig
    from avader.model import build_vade
    from avader.runs import seed_everything
    from avader.training import _compile, resolve_precision

    policy = resolve_precision(precision)
    keras.mixed_precision.set_global_policy(policy)
    seed_everything(0)
    model = build_vade(model_config(args.smoke), seed=0)
    tc = TrainingConfig(batch_size=args.batch_size)
    _compile(model, tc, clip=True)
    model.set_mode("vade", latent_weight=tc.latent_weight)
    return model, policy


def _timed_fit(model, dataset, warmup: int, steps: int) -> dict:
    """``model.fit`` for ``warmup + steps`` steps; seconds per step over the last ``steps``."""
    import keras

    ends = []

    class StepEnds(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            ends.append(time.perf_counter())

    history = model.fit(dataset, epochs=1, steps_per_epoch=warmup + steps, verbose=0, shuffle=False,
                        callbacks=[StepEnds()])
    step_seconds = np.diff(ends[warmup - 1:])
    return {"seconds_per_step": float((ends[-1] - ends[warmup - 1]) / steps),
            "median_step_seconds": float(np.median(step_seconds)), "min_step_seconds": float(step_seconds.min()),
            "step_seconds": [round(float(s), 4) for s in step_seconds],
            "final_loss": float(history.history["loss"][-1])}


def _child_train(args) -> dict:
    import tensorflow as tf

    model, policy = _build(args, args.precision)
    size = model.model_config.image_size
    batch = tf.constant(blobs(args.batch_size, size)[..., None].astype(np.float32) / 255.0)
    timing = _timed_fit(model, tf.data.Dataset.from_tensors(batch).repeat(), args.warmup, args.steps)
    analytic = analytic_flops(model.model_config, args.batch_size)
    try:
        profiled, error = profiler_flops(model, args.batch_size), None
    except Exception as err:  # noqa: BLE001 - the analytic count stands in; the reason is recorded
        profiled, error = None, f"{type(err).__name__}: {err}"
    flops = profiled["total"] if profiled else analytic["train_step"]
    seconds = timing["seconds_per_step"]
    return {"precision": policy, "batch_size": args.batch_size, "warmup_steps": args.warmup, "steps": args.steps,
            **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in timing.items()},
            "images_per_second": round(args.batch_size / seconds, 2),
            "gflops_per_second": round(flops / seconds / 1e9, 1),
            "flops": {"method": "profiler" if profiled else "analytic", "train_step": flops,
                      "analytic": analytic, "profiler": profiled, "profiler_error": error,
                      "profiler_matrix_to_analytic": (round(profiled["matrix"] / analytic["train_step"], 4)
                                                      if profiled else None)}}


def _child_encode(args) -> dict:
    import tensorflow as tf

    from avader.clustering import _inference_step

    model, policy = _build(args, args.precision)
    size = model.model_config.image_size
    n_batches, repeats = (2, 2) if args.smoke else (8, 2)
    images = tf.constant(blobs(ENCODE_BATCH, size, seed=1)[..., None].astype(np.float32) / 255.0)
    step = _inference_step(model, with_sse=False)
    for _ in range(2):
        np.asarray(step(images)[0])
    passes = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(n_batches):
            outputs = step(images)
            means = np.asarray(outputs[0], dtype=np.float32)
        passes.append(time.perf_counter() - started)
    n = n_batches * ENCODE_BATCH
    return {"precision": policy, "batch_size": ENCODE_BATCH, "images_per_pass": n,
            "pass_seconds": [round(s, 4) for s in passes], "images_per_second": round(n / min(passes), 2),
            "latent_means_finite": bool(np.isfinite(means).all())}


def _child_io(args) -> dict:
    from avader.data import GalaxySet, make_dataset

    model, policy = _build(args, "float32")
    mapped = GalaxySet.read(args.data, validate=False)
    loaded = GalaxySet.from_arrays(np.array(mapped.images))
    sets = {"memmap": mapped, "memory": loaded}
    segment_steps, warmup = max(args.steps // 2, 2), IO_WARMUP
    runs = []
    for repeat in range(2):
        for source in ("memmap", "memory"):
            dataset = make_dataset(sets[source], args.batch_size, shuffle=True, seed=repeat, flips=True).repeat()
            timing = _timed_fit(model, dataset, warmup, segment_steps)
            runs.append({"source": source, "repeat": repeat, "seconds_per_step": round(timing["seconds_per_step"], 4),
                         "median_step_seconds": round(timing["median_step_seconds"], 4)})
    best = {source: min(r["seconds_per_step"] for r in runs if r["source"] == source) for source in sets}
    return {"precision": policy, "n": len(mapped), "batch_size": args.batch_size, "warmup_steps": warmup,
            "steps_per_segment": segment_steps, "memory_mapped": [mapped.memory_mapped, loaded.memory_mapped],
            "file_mib": round(Path(args.data).stat().st_size / 2**20, 2), "runs": runs,
            "memmap_seconds_per_step": best["memmap"], "memory_seconds_per_step": best["memory"],
            "ratio_memmap_to_memory": round(best["memmap"] / best["memory"], 4)}


def child(args) -> None:
    """One measurement (``args.kind``) in this process; writes its JSON to ``args.json``."""
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    kinds = {"matmul": _child_matmul, "train": _child_train, "encode": _child_encode, "io": _child_io}
    started = time.perf_counter()
    result = kinds[args.kind](args)
    result["child_seconds"] = round(time.perf_counter() - started, 1)
    Path(args.json).write_text(json.dumps(result))


def measure(kind: str, args, precision: str = "float32", data: Path | None = None) -> dict:
    """Run :func:`child` in a fresh subprocess under the rusage wrapper; its result plus ``peak_rss_mib``."""
    options = ["--kind", kind, "--precision", precision, "--batch-size", str(args.batch_size),
               "--steps", str(args.steps), "--warmup", str(args.warmup)]
    options += (["--smoke"] if args.smoke else []) + (["--data", str(data)] if data else [])
    started = time.time()
    result, peak = common.run_wrapped_child(__file__, options, f"training benchmark child ({kind}, {precision})",
                                            TF_CPP_MIN_LOG_LEVEL="2")
    result["process_seconds"] = round(time.time() - started, 1)
    result["peak_rss_mib"] = peak
    return result


def _bar(value, bar: float, at_most: bool = False) -> dict:
    if value is None or not math.isfinite(value):
        return {"value": None, "bar": bar, "passed": None}
    return {"value": round(value, 3), "bar": bar, "comparison": "<=" if at_most else ">=",
            "passed": bool(value <= bar if at_most else value >= bar)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="small network at 32x32, few steps (about a minute)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per training step (default 32)")
    parser.add_argument("--steps", type=int, help="timed training steps per measurement (default 24; smoke 3)")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16",
                        help="comma-separated keras policies (float32 first: the reference)")
    parser.add_argument("--out", type=Path, help="result file")
    common.add_child_options(parser, "--kind", "--precision")
    parser.add_argument("--warmup", type=int, help=argparse.SUPPRESS)
    args = common.parse_args(parser, argv, child)
    if args is None:
        return 0
    from avader.runs import machine_info

    if args.batch_size < 1 or (args.steps is not None and args.steps < 1):
        parser.error("--batch-size and --steps must be at least 1")
    args.steps = args.steps or (3 if args.smoke else 24)
    args.warmup = 2 if args.smoke else 3
    precisions = [p for p in args.precisions.split(",") if p]
    config = model_config(args.smoke)
    load_before = common.load_average()
    started = time.time()

    matmuls = [measure("matmul", args)]
    logging.info("matmul: float32 %.1f GFLOP/s, bfloat16 %.1f GFLOP/s (n = %d)", matmuls[0]["float32"]["gflops"],
                 matmuls[0]["bfloat16"]["gflops"], matmuls[0]["float32"]["n"])
    training, encoding = [], []
    for precision in precisions:
        run = measure("train", args, precision)
        training.append(run)
        logging.info("train %s: %.3f s/step, %.2f images/s, %.1f GFLOP/s (%s FLOPs)", run["precision"],
                     run["seconds_per_step"], run["images_per_second"], run["gflops_per_second"], run["flops"]["method"])
    for precision in precisions:
        run = measure("encode", args, precision)
        encoding.append(run)
        logging.info("encode %s: %.1f images/s", run["precision"], run["images_per_second"])
    # Enough batches that no segment crosses an epoch end (at least 32 batches in full mode).
    n_io = args.batch_size * max(IO_WARMUP + max(args.steps // 2, 2), 4 if args.smoke else 32)
    with tempfile.TemporaryDirectory(dir=common.RESULTS.parent) as tmp:
        data = write_data(Path(tmp) / "train.fits", n_io, config.image_size)
        io = measure("io", args, data=data)
    logging.info("memmap %.3f s/step, memory %.3f s/step: ratio %.3f", io["memmap_seconds_per_step"],
                 io["memory_seconds_per_step"], io["ratio_memmap_to_memory"])
    matmuls.append(measure("matmul", args))
    peak = {dtype: {"n": matmuls[0][dtype]["n"], "gflops": max(m[dtype]["gflops"] for m in matmuls)}
            for dtype in ("float32", "bfloat16")}
    peak["runs"] = matmuls
    logging.info("matmul peak (best of the runs before and after): float32 %.1f GFLOP/s, bfloat16 %.1f GFLOP/s",
                 peak["float32"]["gflops"], peak["bfloat16"]["gflops"])

    def find(runs, precision):
        return next((r for r in runs if r["precision"] == precision), None)

    f32_train, f32_encode = find(training, "float32"), find(encoding, "float32")
    mixed = next((p for p in (r["precision"] for r in training) if p != "float32"), None)
    mixed_train, mixed_encode = find(training, mixed), find(encoding, mixed)
    for run in training:
        matmul = peak["bfloat16" if "bfloat16" in run["precision"] else "float32"]["gflops"]
        run["fraction_of_matmul_peak"] = round(run["gflops_per_second"] / matmul, 3)
    speedup_train = (f32_train["seconds_per_step"] / mixed_train["seconds_per_step"]
                     if f32_train and mixed_train else None)
    speedup_encode = (mixed_encode["images_per_second"] / f32_encode["images_per_second"]
                      if f32_encode and mixed_encode else None)
    fraction = f32_train["gflops_per_second"] / peak["float32"]["gflops"] if f32_train else None
    result = {
        "benchmark": "training throughput of the paper network against the matmul peak, mixed precision, memmap input",
        "command": common.command_line(__file__, argv),
        "mode": "smoke" if args.smoke else "full",
        "model": ("small smoke network (32x32, filters 16/16/8)" if args.smoke else
                  "paper network, avader.config.ModelConfig() (128x128, filters 64/64/16, latent 20, K 12)"),
        "model_config": config.to_dict(),
        "image_size": config.image_size,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "warmup_steps": args.warmup,
        "mixed_precision": mixed,
        "flops_method": f32_train["flops"]["method"] if f32_train else training[0]["flops"]["method"],
        "train_step_flops": (f32_train or training[0])["flops"]["train_step"],
        "matmul_peak": peak,
        "training": training,
        "encoding": encoding,
        "memmap": io,
        "bars": {
            "float32_fraction_of_matmul_peak": _bar(fraction, BARS["float32_fraction_of_matmul_peak"]),
            "mixed_training_speedup": _bar(speedup_train, BARS["mixed_training_speedup"]),
            "mixed_encoding_speedup": _bar(speedup_encode, BARS["mixed_encoding_speedup"]),
            "memmap_to_memory_seconds_per_step": _bar(io["ratio_memmap_to_memory"],
                                                      BARS["memmap_to_memory_seconds_per_step"], at_most=True),
        },
        "load_average_before": load_before,
        "load_average_after": common.load_average(),
        "seconds": round(time.time() - started, 1),
        "machine": machine_info(with_devices=True),
    }
    out = args.out or common.RESULTS / ("training_smoke.json" if args.smoke else "training.json")
    common.write_result(out, result)
    for name, bar in result["bars"].items():
        logging.info("%s: %s (bar %s %s): %s", name, bar["value"], bar.get("comparison", ""), bar["bar"],
                     {True: "passed", False: "failed", None: "not measured"}[bar["passed"]])
    logging.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
