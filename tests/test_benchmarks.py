"""Benchmark scripts: ``benchmarks/bench_training.py`` end to end in its smoke mode, and its FLOP count."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH_TRAINING = ROOT / "benchmarks" / "bench_training.py"


@pytest.fixture(scope="module")
def bench_training(load_benchmark):
    return load_benchmark("bench_training")


def _positive(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def test_analytic_flops_of_the_paper_network(bench_training):
    """Convolutions and dense layers of ModelConfig(), summed by hand: 4.94 GFLOP per image forward."""
    from avader.config import ModelConfig

    flops = bench_training.analytic_flops(ModelConfig(), batch=32)
    assert flops["forward_per_image"] == 4_935_876_608
    assert flops["train_step"] == 3 * 32 * 4_935_876_608


def test_training_benchmark_smoke(tmp_path):
    """``bench_training.py --smoke`` in a subprocess (about a minute): every headline number present and positive."""
    out = tmp_path / "training_smoke.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, str(BENCH_TRAINING), "--smoke", "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["mode"] == "smoke" and result["image_size"] == 32 and result["mixed_precision"] == "mixed_bfloat16"
    for dtype in ("float32", "bfloat16"):
        assert _positive(result["matmul_peak"][dtype]["gflops"])
    assert result["flops_method"] in ("profiler", "analytic") and _positive(result["train_step_flops"])
    assert [run["precision"] for run in result["training"]] == ["float32", "mixed_bfloat16"]
    for run in result["training"]:
        for key in ("seconds_per_step", "images_per_second", "gflops_per_second", "fraction_of_matmul_peak"):
            assert _positive(run[key]), (run["precision"], key)
        assert math.isfinite(run["final_loss"])
        if run["flops"]["method"] == "profiler":  # the profiler's convolutions and matmuls are the analytic count
            assert run["flops"]["profiler_matrix_to_analytic"] == pytest.approx(1.0, abs=0.01)
    assert [run["precision"] for run in result["encoding"]] == ["float32", "mixed_bfloat16"]
    assert all(_positive(run["images_per_second"]) and run["latent_means_finite"] for run in result["encoding"])
    memmap = result["memmap"]
    assert memmap["memory_mapped"] == [True, False] and len(memmap["runs"]) == 4
    for key in ("memmap_seconds_per_step", "memory_seconds_per_step", "ratio_memmap_to_memory"):
        assert _positive(memmap[key]), key
    assert set(result["bars"]) == {"float32_fraction_of_matmul_peak", "mixed_training_speedup",
                                   "mixed_encoding_speedup", "memmap_to_memory_seconds_per_step"}
    for bar in result["bars"].values():
        assert _positive(bar["value"]) and _positive(bar["bar"]) and isinstance(bar["passed"], bool)
    assert len(result["load_average_before"]) == 3 and len(result["load_average_after"]) == 3
    assert result["machine"]["cpu_cores"] >= 1
