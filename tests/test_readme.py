"""The docs test: every command in README.md's code blocks runs and exits 0, on small jobs.

Each `sh` block line is split at `&&`; a `chipfit ...` segment runs in-process (chipfit.cli.main) in a
temporary directory on a temporary results store. A segment not run here is a setup step (.ci/run runs
those on a fresh clone) or is named in NOT_RUN or SHORT_FORM with the reason. A `python` block is executed;
a `text` block is output, except its `$ ` lines, which are commands as above. A README command that none of
these covers fails the test, so a new command cannot slip in unchecked.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from chipfit.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()

# Setup steps: they create and fill a virtual environment. .ci/run runs the README's test command
# verbatim on a clean clone (test_ci_runs_the_readme_test_command), and the main job after it.
SETUP = re.compile(r"^(python3 -m venv |\.venv/bin/pip install |\.venv/bin/python -m pytest$)")

# Commands that run for minutes or until stopped run as `--help`: the command and its options parse.
SHORT_FORM = {
    "serve": "a server runs until it is stopped",
    "bench": "the micro-benchmarks take about 40 s even with --quick on a 2-core machine",
    "calibrate": "fits on a stored bench run, which takes 40 s to make; tests/test_calibrate.py fits stored runs",
    "validate": "measures 16 cases (minutes), or predicts every published row; tests/test_published.py "
                "and tests/test_measure_rounds.py run both on small inputs",
}

# Commands of other programs, not run here.
NOT_RUN = {
    "torchrun --nproc-per-node 2 -m chipfit.measure.distributed":
        "starts a 2-process job; tests/test_distributed.py::test_two_process_gloo_job_stores_one_run runs it "
        "with small sizes",
    "benchmarks/gpu_check.sh --device cuda:0":
        "needs a GPU and 5-8 minutes; tests/test_gpu_check.py runs its --cpu-smoke mode (pytest -m slow)",
    "PYTHONPATH=src .venv/bin/python benchmarks/bench_gpu_shared.py ../shared/gpu/h200-2026-12-04.sqlite":
        "reads the shared H200 store, which lives outside the repository; its output is pasted beside it",
}

# Shorter runs of the same command: fewer timed repetitions, a smaller batch.
SMALLER = {"measure": ["--reps", "1", "--batch", "1"]}


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M)


def commands() -> list[str]:
    """Every command segment of the README: each line of a shell block, each `$ ` line of an output block."""
    out = []
    for lang, body in code_blocks(README):
        for line in body.splitlines():
            if lang == "sh" or line.startswith("$ "):
                out += [seg.strip() for seg in line.removeprefix("$ ").split("&&") if seg.strip()]
    return out


def argv_of(segment: str) -> list[str] | None:
    """The arguments to give chipfit.cli.main for a README segment; None where it is not run here."""
    if SETUP.match(segment) or segment in NOT_RUN:
        return None
    words = shlex.split(segment)
    assert words[0] in ("chipfit", ".venv/bin/chipfit"), f"README command not covered by the docs test: {segment}"
    args = words[1:]
    if args[0] in SHORT_FORM:
        return [args[0], "--help"]
    return args + SMALLER.get(args[0], [])


def test_every_block_is_shell_python_or_output():
    assert {lang for lang, _ in code_blocks(README)} <= {"sh", "python", "text"}


def test_readme_is_short():
    assert len(README) <= 10_000, f"README.md has {len(README)} characters; move detail to docs/"


def first_two_shell_blocks() -> tuple[str, str]:
    """The README's opening commands: set up and run the main job; set up and run the tests."""
    first, second = [body.strip() for lang, body in code_blocks(README) if lang == "sh"][:2]
    return first, second


def test_readme_starts_with_the_main_job_then_the_tests():
    first, second = first_two_shell_blocks()
    assert first.startswith("python3 -m venv .venv") and "chipfit compare" in first
    assert second.startswith("python3 -m venv .venv") and second.endswith("-m pytest")


def test_ci_runs_the_readme_test_command():
    first, tests = first_two_shell_blocks()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci, ".ci/run must run the README's test command, character for character"
    main_job = first.split("&&")[-1].strip()
    assert any(line.startswith(main_job) for line in ci), ".ci/run must run the README's main job"


def test_links_point_to_files():
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One results store for the module, so `results list` sees what `measure` stored."""
    return tmp_path_factory.mktemp("store") / "results.sqlite"


@pytest.fixture
def workdir(tmp_path, monkeypatch, store):
    """A temporary directory and results store, so the commands write nothing in the tree."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHIPFIT_DB", str(store))
    return tmp_path


@pytest.mark.parametrize("segment", commands(), ids=lambda s: s[:60])
def test_command_runs(segment, workdir, capsys):
    argv = argv_of(segment)
    if argv is None:
        pytest.skip(NOT_RUN.get(segment, "setup step: .ci/run runs it on a fresh clone"))
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, f"`{segment}` exited {code}: {err.strip()[-500:]}"
    assert out.strip(), f"`{segment}` printed nothing"


def test_python_blocks_run(workdir, capsys):
    blocks = [body for lang, body in code_blocks(README) if lang == "python"]
    assert blocks
    for body in blocks:
        exec(compile(body, "README.md", "exec"), {})
    assert capsys.readouterr().out.strip()
