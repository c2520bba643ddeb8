"""Tests for the search command line (`python -m search.run`, console script `nasnet-search`)."""

import csv
import os
import re
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from search import run  # noqa: E402
from _cli import TINY_SEARCH_FLAGS as TINY_FLAGS  # noqa: E402
from _cli import subprocess_env as _env  # noqa: E402

pytestmark = pytest.mark.xdist_group("tiny_search")


@pytest.fixture(scope="module")
def searched(tiny_search):
    """The session's tiny search (tests/conftest.py): its working directory and `subprocess` result."""
    return tiny_search


def test_end_to_end_writes_outputs_and_prints_progress(searched):
    cwd, result = searched
    assert result.returncode == 0, result.stdout + result.stderr
    project = cwd / "out" / "rl"
    for n in (1, 2, 3):
        assert f"[{n}/3] trial " in result.stdout
    assert "best " in result.stdout and "ETA" in result.stdout and "elapsed" in result.stdout
    assert "2 children at once (local workers)" in result.stdout
    ran = set()
    for tuner_id in ("tuner0", "tuner1"):  # the local workers trained the children and exited cleanly
        log = (cwd / "out" / f"rl_{tuner_id}.log").read_text()
        assert f"Worker {tuner_id} done" in log
        ran |= set(re.findall(rf"{tuner_id}: trial (\d+) \(attempt 1\) COMPLETED", log))
    assert len(ran) == 3

    with open(project / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == ("trial_id", "status", "reward", "params", "mult_adds", "seconds", "genotype", "message")
    assert len(rows) == 3 and all(r["status"] == "COMPLETED" for r in rows)
    # Each reward is a fraction of the 297 digits reward images classified right.
    assert all(float(r["reward"]) * 297 == pytest.approx(round(float(r["reward"]) * 297), abs=1e-3)
               and int(r["params"]) > 0 and int(r["mult_adds"]) > 0 for r in rows)
    assert (project / "rewards.png").read_bytes()[:4] == b"\x89PNG"

    from nasnet_keras import NASNet
    from nasnet_keras.genotypes import Genotype

    genotype = Genotype.from_json((project / "best_genotype.json").read_text())
    best = max(rows, key=lambda r: float(r["reward"]))
    assert (genotype.normal, genotype.reduction) == (Genotype.from_json(best["genotype"]).normal,
                                                    Genotype.from_json(best["genotype"]).reduction)
    model = NASNet(genotype, num_cells=1, filters=4, stem="cifar", input_shape=(32, 32, 3), classes=10)
    assert model.count_params() == int(best["params"])

    # The printed line builds the best cell at full scale.
    line = next(ln.strip() for ln in result.stdout.splitlines() if ln.strip().startswith("model = NASNet("))
    assert "num_cells=6, filters=32" in line
    assert f"python -m search.train --genotype={project}" in result.stdout
    scope = {"NASNet": NASNet, "Genotype": Genotype}
    exec(line, scope)  # noqa: S102 - the line the CLI tells users to run
    assert scope["model"].output_shape == (None, 10)


def test_resume_with_a_different_space_is_refused_and_deletes_nothing(searched, capsys):
    cwd, result = searched
    assert result.returncode == 0
    project = cwd / "out" / "rl"
    before = {p.name: p.stat().st_mtime_ns for p in project.iterdir()}
    flags = [f for f in TINY_FLAGS if not f.startswith("--num_blocks")] + ["--num_blocks=2"]
    code = run.cli(["nasnet-search"] + flags + [f"--directory={cwd / 'out'}"])
    err = capsys.readouterr().err
    assert code == 1
    assert "the search space differs from the saved one (num_blocks: saved 1, given 2)" in err
    assert "Nothing was deleted" in err and "--overwrite" in err and "Traceback" not in err
    assert {p.name: p.stat().st_mtime_ns for p in project.iterdir()} == before


def test_resume_with_different_ops_is_refused(searched, capsys):
    cwd, result = searched
    assert result.returncode == 0
    code = run.cli(["nasnet-search"] + TINY_FLAGS + ["--ops=identity,max_pool_3x3", f"--directory={cwd / 'out'}"])
    err = capsys.readouterr().err
    assert code == 1
    assert "error: Cannot resume" in err and "ops: saved [" in err and "given ['identity', 'max_pool_3x3']" in err
    assert "--ops" in err and "Traceback" not in err


def test_resume_with_same_flags_continues_without_new_trials(searched, capsys):
    cwd, _ = searched
    code = run.cli(["nasnet-search"] + TINY_FLAGS + ["--seed=1", f"--directory={cwd / 'out'}", "--verbose=0"])
    out = capsys.readouterr().out
    assert code == 0
    assert "Done: 3 completed, 0 failed" in out  # all 3 trials were already done


@pytest.mark.parametrize("flag, message", [
    ("--max_trials=0", "--max_trials=0"),
    ("--oracle=evolution", "value should be one of <rl|random|enas|enas_random>"),
    ("--learning_rate=-1", "--learning_rate must be > 0"),
    ("--distribution=tpu", "value should be one of <auto|mirrored|default|one_device>"),
    ("--preset=huge", "value should be one of <quick|paper>"),
    ("--no_such_flag=1", "Unknown command line flag 'no_such_flag'"),
])
def test_invalid_flags_give_a_clear_error(flag, message, capsys, tmp_path):
    assert run.cli(["nasnet-search", flag, f"--directory={tmp_path}"]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not os.listdir(tmp_path)


def test_positional_argument_is_a_usage_error(capsys, tmp_path):
    assert run.cli(["nasnet-search", "cifar10", f"--directory={tmp_path}"]) == 1
    assert "Unexpected positional arguments ['cifar10']" in capsys.readouterr().err


def test_unknown_dataset_and_empty_directory_fail_without_traceback(capsys, tmp_path):
    empty = tmp_path / "empty_images"
    empty.mkdir()
    out_dir = tmp_path / "out"
    assert run.cli(["nasnet-search", "--dataset=not_a_dataset_xyz", f"--directory={out_dir}"]) == 1
    err = capsys.readouterr().err
    assert "error: Unknown dataset 'not_a_dataset_xyz'" in err and "Traceback" not in err
    assert run.cli(["nasnet-search", f"--dataset={empty}", f"--directory={out_dir}"]) == 1
    err = capsys.readouterr().err
    assert f"error: Image directory '{empty}' has no class sub-folders with images" in err
    assert not out_dir.exists()


def test_console_script_entry_exits_non_zero_on_bad_flags(tmp_path):
    result = subprocess.run([sys.executable, "-c", "from search.run import run_main; run_main()",
                             "--epochs=0"], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "--epochs=0" in result.stderr and "Traceback" not in result.stderr


def test_presets_are_defaults_and_flags_override_them():
    run.FLAGS.unparse_flags()
    run.FLAGS(["nasnet-search", "--preset=paper", "--epochs=3"])
    try:
        settings = run.resolve_settings()
    finally:
        run.FLAGS.unparse_flags()
    paper = run.PRESETS["paper"]
    assert settings["epochs"] == 3
    assert {k: settings[k] for k in paper if k != "epochs"} == {k: v for k, v in paper.items() if k != "epochs"}
    assert (paper["dataset"], paper["num_cells"], paper["epochs"], paper["num_blocks"]) == ("cifar10", 2, 20, 5)
    assert settings["project_name"] == "rl" and settings["oracle"] == "rl"
    assert set(run.PRESETS["quick"]) == set(paper)
    from nasnet_keras.search.tuner import DISTRIBUTIONS

    assert run.DISTRIBUTIONS == DISTRIBUTIONS


def test_quick_preset_and_flag_defaults():
    run.FLAGS.unparse_flags()
    run.FLAGS(["nasnet-search"])
    try:
        settings = run.resolve_settings()
    finally:
        run.FLAGS.unparse_flags()
    quick = run.PRESETS["quick"]
    assert {k: settings[k] for k in quick} == quick
    assert quick["dataset"] == "digits" and quick["max_trials"] >= 10 and quick["epochs"] == 1
    assert settings["directory"] == "nasnet_search" and settings["distribution"] == "auto"


ENAS_OPS = "sep_conv_3x3,sep_conv_5x5,avg_pool_3x3,max_pool_3x3,identity"


@pytest.mark.parametrize("flag, message", [
    ("--ops=sep_conv_3x3,conv_9x9", "--ops holds unknown names ['conv_9x9']; choose from identity, "),
    ("--ops=identity,identity", "--ops lists a name twice"),
    ("--ops=", "--ops must be a non-empty list"),
    ("--combines=add,mul", "--combines holds unknown names ['mul']; choose from add, concat."),
])
def test_bad_search_space_flags_give_one_error_line(flag, message, capsys, tmp_path):
    assert run.cli(["nasnet-search", flag, f"--directory={tmp_path}"]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err
    if "unknown" in message:
        from nasnet_keras import genotypes

        allowed = genotypes.OPS if "--ops" in flag else genotypes.COMBINES
        assert lines[0].endswith(", ".join(allowed) + ".")
    assert not os.listdir(tmp_path)


def test_search_space_flags_round_trip_through_worker_flags():
    run.FLAGS.unparse_flags()
    try:
        run.FLAGS(["nasnet-search", f"--ops={ENAS_OPS}", "--combines=add"])
        settings = run.resolve_settings()
        assert settings["ops"] == tuple(ENAS_OPS.split(",")) and settings["combines"] == ("add",)
        argv = run.worker_flags(settings, "workers")
        assert f"--ops={ENAS_OPS}" in argv and "--combines=add" in argv
        run.FLAGS.unparse_flags()
        run.FLAGS(["nasnet-search"] + argv)
        assert run.resolve_settings() == dict(settings, directory="workers")
        run.FLAGS.unparse_flags()
        run.FLAGS(["nasnet-search"])
        defaults = run.resolve_settings()
        assert defaults["ops"] is None and defaults["combines"] is None
        assert not any(f.startswith(("--ops", "--combines")) for f in run.worker_flags(defaults, "workers"))
    finally:
        run.FLAGS.unparse_flags()


def test_search_space_flags_reach_the_oracle_and_tuner(monkeypatch):
    from nasnet_keras.search import tuner as tuner_lib
    from nasnet_keras.search.space import SearchSpace

    built = {}
    monkeypatch.setattr(tuner_lib, "CellSearchTuner", lambda oracle, dataset, **kwargs: built.update(
        oracle=oracle, **kwargs))
    run.FLAGS.unparse_flags()
    try:
        run.FLAGS(["nasnet-search", f"--ops={ENAS_OPS}", "--combines=add", "--num_blocks=2"])
        settings = run.resolve_settings()
    finally:
        run.FLAGS.unparse_flags()
    run._build_tuner(settings)
    enas = SearchSpace(num_blocks=2, ops=tuple(ENAS_OPS.split(",")), combines=("add",))
    assert built["space"] == enas and built["oracle"].space == enas
    assert built["oracle"].controller.num_choices[2:5] == (5, 5, 1)  # op0, op1, combine of the first block


def test_all_children_failing_exits_with_the_reason(tmp_path, capsys):
    """A learning rate of 1e30 makes every child's loss NaN: the CLI stops after the failure limit. In this
    process (`cli`, the command line's code path; the children still train in their own process): the same
    stop across real chief and worker processes is tests/test_search_faults.py's (e)."""
    code = run.cli(["nasnet-search"] + TINY_FLAGS + ["--learning_rate=1e30", "--max_consecutive_failed_trials=2",
                                                     f"--directory={tmp_path / 'out'}", "--oracle=random"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "error: The search stopped: the last 2 trials all failed" in err
    assert "loss became nan" in err and "Traceback" not in err + out
    with open(tmp_path / "out" / "random" / "trials.csv", newline="") as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["FAILED", "FAILED"]
