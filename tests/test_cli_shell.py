"""The command line as people use it: --version, help with defaults and examples, "did you mean",
arguments refused before torch is imported, the ranking at 100 columns, numbers for people."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from rich.console import Console

from chipfit import __version__
from chipfit.cli import main
from chipfit.report import terminal


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"chipfit {__version__}"


@pytest.mark.parametrize("command", ["hardware", "models", "profile", "compare", "advise", "report", "plan", "serve",
                                     "devices", "bench", "measure", "calibrate", "validate", "results"])
def test_every_subcommand_has_an_example(capsys, command):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0 and "examples:\n  chipfit " + command in out


def test_help_shows_defaults(capsys):
    _, out, _ = run(capsys, "compare", "--help")
    flat = " ".join(out.split())
    assert "--top TOP rows to show (0: all) (default: 20)" in flat
    assert ('--devices DEVICES devices per entry, data parallel (default: the count a --hardware name gives, '
            '"8x H100", else 1)') in flat
    assert "(default: None)" not in flat


@pytest.mark.parametrize("argv, sentence", [
    (["comapre", "resnet50"], "Command 'comapre' is an invalid choice. Did you mean compare"),
    (["compare", "resnet50", "--bach", "3"], "unrecognized arguments: --bach 3. Did you mean --batch"),
    (["compare", "resnet50", "--tokens", "nan"],
     "--tokens nan is not a finite number; give a positive number of tokens"),
    (["compare", "resnet50", "--tokens", "1e400"], "--tokens inf is not a finite number"),
    (["compare", "resnet50", "--samples", "-5"], "--samples -5 leaves nothing to do"),
    (["compare", "resnet50", "--epochs", "0"], "--epochs 0 leaves nothing to do"),
    (["compare", "resnet50", "--batch", "0"], "Batch 0 is not a positive number of samples"),
    (["compare", "resnet50", "--batch", "1e400"], "--batch: invalid int value: '1e400'"),
    (["compare", "resnet50", "--seq", "-1"], "--seq -1 is out of range; give a whole number of tokens, 1 or more"),
    (["compare", "resnet50", "--devices", "0"], "--devices 0 is out of range; give a whole number of devices"),
    (["compare", "resnet50", "--pue", "0.5"], "--pue 0.5 is out of range; give a data-centre PUE from 1.0 to 3.0"),
    (["compare", "resnet50", "--grid", "inf"], "--grid inf is not a finite number"),
    (["compare", "resnet50", "--top", "-1"], "--top: -1 is below 0; give 0 or more"),
    (["profile", "resnet50", "--depth", "0"], "--depth: 0 is below 1; give 1 or more"),
    (["advise", "resnet50", "--budget", "nan"], "--budget nan is not a finite number"),
    (["advise", "resnet50", "--co2", "-1"], "--co2 -1 is out of range; give a positive number of kg CO2"),
    (["advise", "resnet50", "--buy", "--electricity", "0.1", "--years", "0"], "--years 0 is out of range"),
    (["plan", "llama-3-8b", "--hardware", "nvidia-h100-sxm5-80gb", "--budget", "-1"], "--budget -1 is out of range"),
])
def test_bad_arguments_exit_2_with_one_sentence(capsys, argv, sentence):
    code, _, err = run(capsys, *argv)
    assert code == 2 and sentence in err
    assert err.startswith("chipfit: ") and len(err.strip().splitlines()) == 1


def test_bad_arguments_are_refused_before_torch_is_imported():
    probe = ("import sys; from chipfit.cli import main; code = main(['compare', 'resnet50', '--tokens', 'nan']); "
             "print(code, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["2", "False"]


def test_numbers_for_people():
    assert terminal.money(0.0000008) == "< $0.01" and terminal.money(12.5) == "$12.50" and terminal.money(None) == "-"
    assert terminal.times(1120.4) == "1,120x" and terminal.times(37.2) == "37x" and terminal.times(0.52) == "0.52x"
    assert terminal.span(0.00747, 0.0231) == "7.47-23.1 ms" and terminal.span(30.0, 7200.0) == "30 s-2 h"


def test_ranking_at_100_columns_keeps_hardware_names_whole(capsys, monkeypatch):
    monkeypatch.setattr(terminal, "console", Console(width=100))
    code, out, _ = run(capsys, "compare", "tests.fixtures.user_models:two_layer", "--train", "--no-local", "--top", "0")
    assert code == 0
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 100
    for hw in ("nvidia-h100-sxm5-80gb", "nvidia-h200-sxm-141gb", "amd-instinct-mi300x"):
        assert any(line.startswith(hw + " ") for line in lines), hw
    # The entries that cannot run are counted, not listed; --show-excluded lists them.
    assert "entries cannot run this job" in out and "--show-excluded" in out and "Left out" not in out
    code, shown, _ = run(capsys, "compare", "tests.fixtures.user_models:two_layer", "--train", "--no-local",
                         "--show-excluded")
    assert "Left out:" in shown and "ibm-heron-r2:" in shown


def test_ops_without_json_prints_the_operator_table(capsys):
    code, out, _ = run(capsys, "profile", "tests.fixtures.user_models:two_layer", "--infer", "--batch", "4", "--ops")
    assert code == 0 and "traced operators" in out and "addmm" in out


def test_default_job_is_stated(capsys):
    code, out, _ = run(capsys, "compare", "tests.fixtures.user_models:two_layer", "--hardware",
                       "nvidia-h100-sxm5-80gb", "--no-local", "--json")
    d = json.loads(out)
    assert code == 0 and d["workload"]["precision"] == "bf16" and d["workload"]["batch"] == 32
    assert any(n.startswith("precision bf16: training in bf16 mixed precision") for n in d["notes"])
    assert any(n.startswith("global batch 32: 32 samples per device") for n in d["notes"])


def test_a_training_job_of_years_on_one_device_points_to_plan(capsys):
    spec = "layers=80,hidden=8192,heads=64,kv_heads=8,ffn=28672,vocab=128256"
    code, out, _ = run(capsys, "compare", "--spec", spec, "--tokens", "1e12", "--class", "gpu", "--no-local", "--json")
    notes = json.loads(out)["notes"]
    assert code == 0
    hint = next(n for n in notes if n.startswith("This training job on one device"))
    assert "`chipfit plan --spec " in hint and "parallel plans over many devices" in hint
