"""Training: schedules, a smoke run end to end, resume, refusal of changed configs, NaN stop."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from avader.config import load_config
from avader.data import GalaxySet
from avader.errors import AvaderError
from avader.training import (
    fit_mixture,
    latent_weight_schedule,
    learning_rate,
    load_run_model,
    read_history,
    size_entropy,
    split_rows,
    train,
    warmup_checkpoint,
)

TINY = ["model.image_size=16", "data.image_size=16", "model.filters=[4, 4, 2]", "model.kernel_sizes=[3, 3, 3]",
        "model.latent_dim=3", "model.n_components=3", "training.batch_size=16", "training.deterministic=true"]


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    """48 16x16 Gaussian blobs of three widths: three obvious clusters."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:16, :16] - 7.5
    widths = np.repeat([1.2, 2.5, 4.5], 16) * rng.uniform(0.9, 1.1, 48)
    images = np.exp(-(x**2 + y**2)[None] / (2 * widths[:, None, None] ** 2))
    images += rng.normal(0, 0.02, images.shape)
    images = np.clip(images, 0, 1).astype(np.float32)
    catalog = {"id": np.arange(48), "width_class": np.repeat([0, 1, 2], 16)}
    return GalaxySet.from_arrays(images, catalog).write(tmp_path_factory.mktemp("blobs") / "blobs.fits")


def test_learning_rate_schedule_matches_paper():
    tc = load_config("paper").training
    assert learning_rate(0, tc) == pytest.approx(3e-4)
    assert learning_rate(3, tc) == pytest.approx(3e-4 * 0.95229)
    assert learning_rate(1.5, tc) == pytest.approx(3e-4 * 0.95229**0.5)
    assert learning_rate(10_000, tc) == pytest.approx(1e-6)


def test_latent_weight_schedule_matches_s3vdc():
    tc = load_config("paper").training
    assert latent_weight_schedule(0, tc) == pytest.approx(0.3)
    assert latent_weight_schedule(12, tc) == pytest.approx(0.3 * (1 + (12 / 25) ** 3))
    assert latent_weight_schedule(25, tc) == pytest.approx(0.6)
    assert latent_weight_schedule(49, tc) == pytest.approx(0.6)
    assert latent_weight_schedule(50, tc) == pytest.approx(0.3)


def test_split_rows_disjoint_and_seeded():
    split = split_rows(100, 0.1, 0.2, seed=3)
    assert (len(split["valid"]), len(split["test"]), len(split["train"])) == (10, 20, 70)
    assert len(np.unique(np.concatenate(list(split.values())))) == 100
    again = split_rows(100, 0.1, 0.2, seed=3)
    assert all(np.array_equal(split[k], again[k]) for k in split)
    with pytest.raises(AvaderError, match="no training rows"):
        split_rows(2, 0.45, 0.45, seed=0)


def test_size_entropy():
    assert size_entropy(np.tile(np.arange(4), 5), 4) == pytest.approx(np.log(4))
    assert size_entropy(np.zeros(10, dtype=int), 4) == 0.0
    assert 0.0 < size_entropy(np.array([0, 0, 0, 1]), 4) < np.log(2)


def test_fit_mixture_balance_picks_the_most_even_restart():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 4, (5, 3))
    latents = np.concatenate([c + rng.normal(0, 1, (n, 3)) for c, n in zip(centres, (80, 60, 40, 20, 10), strict=True)])
    fit = fit_mixture(latents, 4, seed=7, restarts=4, select="balance")
    single = [fit_mixture(latents, 4, seed=7 + r, restarts=1) for r in range(4)]
    entropies = [s["size_entropy"] for s in single]
    likelihoods = [s["log_likelihood"] for s in single]
    assert len(set(entropies)) > 1
    assert fit["size_entropy"] == max(entropies) and fit["restart"] == int(np.argmax(entropies))
    assert fit["means"].shape == (4, 3) and fit["variances"].shape == (4, 3) and fit["weights"].shape == (4,)
    by_likelihood = fit_mixture(latents, 4, seed=7, restarts=4)
    assert by_likelihood["restart"] == int(np.argmax(likelihoods))
    with pytest.raises(AvaderError, match="init_select"):
        fit_mixture(latents, 4, seed=7, select="entropy")


def test_fit_mixture_recovers_separated_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10]])
    x = np.concatenate([rng.normal(c, 0.5, (200, 2)) for c in centres])
    fit = fit_mixture(x, 3, seed=0, restarts=2)
    found = np.sort(np.round(fit["means"]).astype(int), axis=0)
    np.testing.assert_array_equal(found, np.sort(centres, axis=0))
    np.testing.assert_allclose(fit["weights"], 1 / 3, atol=0.01)
    np.testing.assert_allclose(fit["variances"], 0.25, rtol=0.3)


def test_smoke_run_writes_everything(blobs, tmp_path):
    config = load_config("smoke", TINY + ["training.baseline_vae=true", "training.baseline_kl_weight=0.25"])
    run = train(config, data=blobs, run_dir=tmp_path / "run", progress=False)
    for name in ("config.yaml", "manifest.json", "model.keras", "history.csv", "split.csv", "baseline_vae.keras",
                 "baseline_history.csv"):
        assert (run / name).is_file(), name
    baseline_weights = [float(row.split(",")[3]) for row in
                        (run / "baseline_history.csv").read_text().strip().splitlines()[1:]]
    assert baseline_weights and all(w == pytest.approx(0.25) for w in baseline_weights)  # not the warm-up's
    history = read_history(run)
    assert list(history["phase"]) == ["warmup", "vade", "vade"]
    for key in ("loss", "reconstruction_loss", "kl_loss", "val_loss"):
        assert np.isfinite(np.asarray(history[key], dtype=float)).all()
    assert history["latent_weight"][1] == pytest.approx(0.3) and history["latent_weight"][2] == pytest.approx(0.6)
    manifest = json.loads((run / "manifest.json").read_text())
    assert {"warmup", "init", "vade", "baseline_vae"} <= set(manifest["phases"])
    assert manifest["phases"]["init"]["seed"] == config.seed  # init_seed -1: the run's seed
    assert manifest["inputs"][str(blobs.resolve())]
    assert warmup_checkpoint(run) is not None
    model = load_run_model(run)
    gamma = np.asarray(model.responsibilities(GalaxySet.read(blobs).get_images(slice(0, 8))[..., None]))
    np.testing.assert_allclose(gamma.sum(1), 1, rtol=1e-5)
    with pytest.raises(AvaderError, match="not empty"):
        train(config, data=blobs, run_dir=tmp_path / "run", progress=False)


def test_fixed_prior_weights_and_variances_stay_at_the_phase_2_fit(blobs, tmp_path):
    from avader.model import build_vade

    runs = {}
    for choice in ("fixed", "learned"):
        config = load_config("smoke", TINY + [f"training.prior_weights={choice}", f"training.prior_variances={choice}"])
        run = train(config, data=blobs, run_dir=tmp_path / choice, progress=False)
        init = build_vade(config.model, seed=0)
        init.load_weights(run.checkpoints / f"epoch{config.training.warmup_epochs:04d}_init.weights.h5")
        final = load_run_model(run)
        runs[choice] = [(np.asarray(getattr(init.prior, name)), np.asarray(getattr(final.prior, name)))
                        for name in ("theta_logits", "log_variances", "means")]
    (theta0, theta1), (var0, var1), (means0, means1) = runs["fixed"]
    np.testing.assert_array_equal(theta0, theta1)
    np.testing.assert_array_equal(var0, var1)
    assert not np.allclose(means0, means1)  # the rest of the prior still trains
    (theta0, theta1), (var0, var1), _ = runs["learned"]
    assert not np.allclose(theta0, theta1) and not np.allclose(var0, var1)
    for key in ("prior_weights", "prior_variances"):
        with pytest.raises(AvaderError, match=key):
            load_config("smoke", [f"training.{key}=frozen"])


def test_decoder_phase_trains_the_decoder_alone_and_resumes(blobs, tmp_path):
    from avader.model import build_vade

    config = load_config("smoke", TINY + ["training.decoder_epochs=2", "training.checkpoint_every=1",
                                          "training.baseline_vae=true"])
    tc = config.training
    run = train(config, data=blobs, run_dir=tmp_path / "run", progress=False)
    history = read_history(run)
    assert list(history["phase"]) == ["warmup", "vade", "vade", "decoder", "decoder"]
    assert list(history["kl_loss"][-2:]) == [0.0, 0.0]  # autoencoder mode: z = latent mean
    end_vade = build_vade(config.model, seed=0)
    end_vade.load_weights(run.checkpoints / f"epoch{tc.warmup_epochs + tc.vade_epochs:04d}_vade.weights.h5")
    final = load_run_model(run)
    for part in ("encoder", "prior"):
        for before, after in zip(getattr(end_vade, part).weights, getattr(final, part).weights, strict=True):
            np.testing.assert_array_equal(np.asarray(before), np.asarray(after))
    assert not all(np.allclose(np.asarray(a), np.asarray(b))
                   for a, b in zip(end_vade.decoder.weights, final.decoder.weights, strict=True))
    assert final.encoder.trainable and final.prior.trainable  # the saved model trains normally again
    assert len(read_history(run)) == 5 and (run / "baseline_vae.keras").is_file()
    baseline_phases = [row.split(",")[1] for row in (run / "baseline_history.csv").read_text().strip().splitlines()[1:]]
    assert baseline_phases == ["baseline_vae"] * tc.vade_epochs + ["baseline_decoder"] * tc.decoder_epochs
    resumed = train(config.replace({"training.baseline_vae": False}), data=blobs, run_dir=tmp_path / "resumed",
                    progress=False, stop_after_epoch=tc.warmup_epochs + tc.vade_epochs + 1)
    assert not (resumed / "model.keras").exists()
    resumed = train(config.replace({"training.baseline_vae": False}), data=blobs, run_dir=tmp_path / "resumed",
                    progress=False, resume=True)
    for a, b in zip(final.get_weights(), load_run_model(resumed).get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    with pytest.raises(AvaderError, match="decoder_epochs"):
        load_config("smoke", ["training.decoder_epochs=-1"])
    with pytest.raises(AvaderError, match="init_seed"):
        load_config("smoke", ["training.init_seed=-2"])


def test_init_seed_reseeds_only_the_mixture_fit(blobs, tmp_path):
    from avader.model import build_vade

    config = load_config("smoke", TINY + ["training.init_seed=7", "training.init_restarts=1"])
    run = train(config, data=blobs, run_dir=tmp_path / "run", progress=False)
    assert json.loads((run / "manifest.json").read_text())["phases"]["init"]["seed"] == 7
    other = train(config.replace({"training.init_seed": 8}), data=blobs, run_dir=tmp_path / "other", progress=False)
    warm = [build_vade(config.model, seed=0) for _ in range(2)]
    for model, r in zip(warm, (run, other)):
        model.load_weights(warmup_checkpoint(r))
    for a, b in zip(warm[0].get_weights(), warm[1].get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # the same warm-up
    init = [build_vade(config.model, seed=0) for _ in range(2)]
    for model, r in zip(init, (run, other)):
        model.load_weights(r.checkpoints / f"epoch{config.training.warmup_epochs:04d}_init.weights.h5")
    assert not np.allclose(np.asarray(init[0].prior.means), np.asarray(init[1].prior.means))  # another mixture fit


def test_resume_reaches_the_same_final_state(blobs, tmp_path):
    config = load_config("smoke", TINY + ["training.warmup_epochs=2", "training.anneal_epochs=2", "training.static_epochs=1",
                                          "training.checkpoint_every=1"])
    straight = train(config, data=blobs, run_dir=tmp_path / "straight", progress=False)
    interrupted = train(config, data=blobs, run_dir=tmp_path / "resumed", progress=False, stop_after_epoch=1)
    assert not (interrupted / "model.keras").exists()
    mid = train(config, data=blobs, run_dir=tmp_path / "resumed", progress=False, resume=True, stop_after_epoch=3)
    assert not (mid / "model.keras").exists()
    resumed = train(config, data=blobs, run_dir=tmp_path / "resumed", progress=False, resume=True)
    a = load_run_model(straight).get_weights()
    b = load_run_model(resumed).get_weights()
    assert len(a) == len(b)
    for wa, wb in zip(a, b):
        np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-5)
    assert len(read_history(resumed)) == len(read_history(straight)) == 5


def test_resume_refuses_changed_configuration(blobs, tmp_path):
    config = load_config("smoke", TINY)
    train(config, data=blobs, run_dir=tmp_path / "run", progress=False, stop_after_epoch=1)
    changed = config.replace(["training.learning_rate=0.5"])
    with pytest.raises(AvaderError, match=r"training\.learning_rate"):
        train(changed, data=blobs, run_dir=tmp_path / "run", progress=False, resume=True)


def test_resume_refuses_a_rewritten_data_file(blobs, tmp_path):
    import shutil

    data = tmp_path / "galaxies.fits"
    shutil.copy(blobs, data)
    config = load_config("smoke", TINY)
    train(config, data=data, run_dir=tmp_path / "run", progress=False, stop_after_epoch=1)
    galaxies = GalaxySet.read(data)
    images = galaxies.get_images(slice(None))[::-1].copy()  # same shape, other pixels (e.g. another seed)
    GalaxySet.from_arrays(images, {"id": np.arange(len(images))}).write(tmp_path / "other.fits")
    os.replace(tmp_path / "other.fits", data)
    with pytest.raises(AvaderError, match=r"galaxies\.fits: changed since .*run was started"):
        train(config, data=data, run_dir=tmp_path / "run", progress=False, resume=True)


def test_nan_loss_stops_with_message_and_keeps_checkpoint(blobs, tmp_path):
    config = load_config("smoke", TINY + ["training.learning_rate=1e30", "training.warmup_epochs=3",
                                          "training.checkpoint_every=1"])
    with pytest.raises(AvaderError, match="NaN or infinite"):
        train(config, data=blobs, run_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "model.keras").exists()


def test_image_size_mismatch_is_refused(blobs, tmp_path):
    with pytest.raises(AvaderError, match="model.image_size is 32"):
        train("smoke", data=blobs, run_dir=tmp_path / "run", progress=False)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_local_workers_train_with_multiworker_strategy(blobs, tmp_path):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    script = textwrap.dedent(f"""
        import json, sys
        from avader.config import load_config
        from avader.training import train
        config = load_config("smoke", {TINY!r} + ["training.warmup_epochs=1", "training.vade_periods=0",
                                                  "training.deterministic=false"])
        run = train(config, data={str(blobs)!r}, run_dir=sys.argv[1], progress=False)
        print("STRATEGY", json.load(open(run / "manifest.json"))["strategy"])
    """)
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
                   CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
        procs.append(subprocess.Popen([sys.executable, "-c", script, str(tmp_path / f"worker{index}")], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-2000:]
        assert "STRATEGY MultiWorkerMirroredStrategy" in out, out[-1500:]
    assert (tmp_path / "worker0" / "model.keras").is_file()
