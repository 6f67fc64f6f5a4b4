"""The avader command: help, info, one-line errors, python -m."""

import subprocess
import sys

import pytest

from avader.cli import build_parser, main


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "info" in out and "examples:" in out


def test_every_subcommand_has_help_with_examples(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name, sub in commands.items():
        text = sub.format_help()
        assert "example" in text, f"avader {name} --help has no example"


def test_info_prints_versions(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "TensorFlow" in out and "Keras 3" in out and "threads" in out and "GPUs" in out


def test_python_m_avader_help():
    result = subprocess.run([sys.executable, "-m", "avader", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "usage: avader" in result.stdout


def test_simulate_first_id_writes_an_independent_draw(tmp_path):
    from avader.data import GalaxySet

    assert main(["simulate", "--n", "3", "--size", "16", "--workers", "1", "--quiet", "--first-id", "500",
                 "--out", str(tmp_path / "unseen.fits")]) == 0
    assert GalaxySet.read(tmp_path / "unseen.fits").ids.tolist() == [500, 501, 502]
    assert main(["simulate", "--n", "3", "--size", "16", "--workers", "1", "--quiet", "--first-id", "-2",
                 "--out", str(tmp_path / "bad.fits")]) == 2
    assert not (tmp_path / "bad.fits").exists()
