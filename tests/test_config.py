"""Profiles and frozen dataclasses: loading, overrides, errors naming the key and the file."""

import dataclasses

import pytest

from avader.config import available_profiles, env_profile, load_config, parse_overrides
from avader.errors import AvaderError


def test_shipped_profiles_load():
    assert {"smoke", "quick", "paper", "published"} <= set(available_profiles())
    for name in available_profiles():
        config = load_config(name)
        assert config.profile == name
        assert config.model.image_size == config.data.image_size


def test_paper_profile_is_the_published_configuration():
    config = load_config("paper")
    assert config.model.image_size == 128
    assert tuple(config.model.filters) == (64, 64, 16)
    assert (config.model.latent_dim, config.model.n_components) == (20, 12)
    assert config.training.batch_size == 190
    assert config.training.warmup_epochs == 100
    assert config.training.warmup_epochs + config.training.vade_epochs == 350


def test_config_is_frozen():
    config = load_config("smoke")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.training.batch_size = 3


def test_overrides_from_strings_and_mappings():
    base = load_config("smoke")
    a = load_config("smoke", ["training.batch_size=7", "seed=4", "model.filters=[4, 4, 2]"])
    b = load_config("smoke", {"training": {"batch_size": 7}, "seed": 4, "model.filters": [4, 4, 2]})
    assert a == b
    assert a.training.batch_size == 7 and a.seed == 4 and a.model.filters == (4, 4, 2)
    assert base.training.batch_size != 7
    assert a.fingerprint() != base.fingerprint()
    assert load_config("smoke").fingerprint() == base.fingerprint()


def test_mapping_valued_settings_are_replaced_not_merged():
    config = load_config("smoke", {"simulation.family_fractions": {"late": 1.0}})
    fractions = config.simulation.family_fractions
    assert fractions.get("late") == 1.0 and sum(fractions.values()) == pytest.approx(1.0)
    again = config.replace(["simulation.family_fractions={spheroid: 0.25, late: 0.75}"])
    assert again.simulation.family_fractions.get("spheroid") == 0.25
    assert again.simulation.family_fractions.get("late") == 0.75


def test_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("training:\n  batch_sise: 3\n")
    with pytest.raises(AvaderError, match=r"mine\.yaml: training\.batch_sise: unknown key"):
        load_config(path)


def test_wrong_type_names_key_and_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("training:\n  batch_size: lots\n")
    with pytest.raises(AvaderError, match=r"mine\.yaml: training\.batch_size: expected int, got str"):
        load_config(path)
    with pytest.raises(AvaderError, match=r"training\.warmup_mode: must be one of"):
        load_config("smoke", ["training.warmup_mode=nonsense"])
    with pytest.raises(AvaderError, match="unknown key 'trianing'"):
        load_config("smoke", ["trianing.batch_size=3"])


def test_unknown_profile_and_bad_yaml(tmp_path):
    with pytest.raises(AvaderError, match="profile 'nope': unknown"):
        load_config("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: [unclosed\n")
    with pytest.raises(AvaderError, match=r"bad\.yaml: not valid YAML"):
        load_config(bad)


def test_resolved_config_round_trips_through_yaml(tmp_path):
    config = load_config("quick", ["training.warmup_epochs=3"])
    path = tmp_path / "resolved.yaml"
    path.write_text(config.to_yaml())
    assert load_config(path) == config


def test_parse_overrides_errors():
    with pytest.raises(AvaderError, match="expected section.key=value"):
        parse_overrides(["training.batch_size"])


def test_env_profile(monkeypatch):
    monkeypatch.delenv("AVADER_PROFILE", raising=False)
    assert env_profile() == "quick"
    monkeypatch.setenv("AVADER_PROFILE", "smoke")
    assert env_profile() == "smoke"


def test_exponent_without_dot_is_a_float():
    assert load_config("smoke", ["training.learning_rate=3e-4"]).training.learning_rate == 3e-4
    with pytest.raises(AvaderError, match=r"training\.learning_rate: expected float, got str 'fast'"):
        load_config("smoke", ["training.learning_rate=fast"])


def test_baseline_kl_weight_is_minus_one_or_not_negative():
    assert load_config("smoke").training.baseline_kl_weight == -1.0
    assert load_config("smoke", ["training.baseline_kl_weight=0.005"]).training.baseline_kl_weight == 0.005
    with pytest.raises(AvaderError, match="baseline_kl_weight: must be -1"):
        load_config("smoke", ["training.baseline_kl_weight=-0.5"])


def test_centre_weight_is_zero_or_a_positive_width():
    assert load_config("smoke").training.centre_weight == 0.0
    assert load_config("smoke", ["training.centre_weight=0.25"]).training.centre_weight == 0.25
    for bad in ("-0.1", "inf"):
        with pytest.raises(AvaderError, match="centre_weight: must be 0"):
            load_config("smoke", [f"training.centre_weight={bad}"])
