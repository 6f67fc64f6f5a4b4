"""Run directories, manifests and seeding."""

import json

import numpy as np
import pytest

from avader.config import load_config
from avader.errors import AvaderError
from avader.runs import RunDir, machine_info, resolve_run_dir, seed_everything


def test_create_writes_config_and_manifest(tmp_path):
    config = load_config("smoke")
    data = tmp_path / "input.bin"
    data.write_bytes(b"abc")
    run = RunDir(tmp_path / "run").create(config, inputs=[data])
    assert run.load_config().fingerprint() == config.fingerprint()
    manifest = json.loads(run.manifest_path.read_text())
    assert manifest["seed"] == 0 and manifest["profile"] == "smoke"
    assert manifest["inputs"][str(data.resolve())] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert manifest["machine"]["cpu_cores"] >= 1
    assert "tensorflow" in manifest["machine"]["versions"]


def test_refuses_non_empty_without_flag(tmp_path):
    config = load_config("smoke")
    RunDir(tmp_path / "run").create(config)
    with pytest.raises(AvaderError, match="not empty; pass --overwrite or --resume"):
        RunDir(tmp_path / "run").create(config)
    RunDir(tmp_path / "run").create(config, overwrite=True)


def test_resume_requires_same_configuration(tmp_path):
    config = load_config("smoke")
    RunDir(tmp_path / "run").create(config)
    RunDir(tmp_path / "run").create(config, resume=True)
    changed = config.replace(["training.batch_size=5"])
    with pytest.raises(AvaderError, match=r"training\.batch_size: 32 -> 5"):
        RunDir(tmp_path / "run").create(changed, resume=True)
    with pytest.raises(AvaderError, match="nothing to resume"):
        RunDir(tmp_path / "other").create(config, resume=True)


def test_record_phase_and_update_manifest(tmp_path):
    run = RunDir(tmp_path / "run").create(load_config("smoke"))
    run.record_phase("warmup", started=0.0, epochs=3)
    run.update_manifest(end="now")
    manifest = run.manifest()
    assert manifest["phases"]["warmup"]["epochs"] == 3 and manifest["end"] == "now"


def test_run_names_resolve_under_data_runs(monkeypatch, tmp_path):
    monkeypatch.setenv("AVADER_DATA", str(tmp_path))
    assert resolve_run_dir("quick") == tmp_path / "runs" / "quick"
    assert resolve_run_dir(tmp_path / "x" / "y") == tmp_path / "x" / "y"


def test_seed_everything_repeats_numpy_and_keras():
    import keras

    draws = []
    for seed in (3, 3, 4):
        seed_everything(seed)
        draws.append((np.random.rand(3), keras.initializers.GlorotUniform()((4, 4)).numpy()))
    np.testing.assert_array_equal(draws[0][0], draws[1][0])
    np.testing.assert_array_equal(draws[0][1], draws[1][1])
    assert not np.array_equal(draws[0][0], draws[2][0])


def test_machine_info_fields():
    info = machine_info(with_devices=False)
    assert {"cpu_model", "cpu_cores", "memory_gib", "versions"} <= set(info)
