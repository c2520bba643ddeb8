"""Tests for nasnet_keras.search.reports (incremental report files) and the O(1) progress line."""

import io
import os
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from nasnet_keras.genotypes import Genotype  # noqa: E402
from nasnet_keras.search import progress, report_writer, reports  # noqa: E402
from nasnet_keras.search.space import (SearchSpace, genotype_from_hyperparameters,  # noqa: E402
                                       hyperparameters_from_genotype)

SPACE = SearchSpace(num_blocks=1, ops=("identity", "conv_1x1", "max_pool_3x3", "sep_conv_3x3"))
G1 = Genotype.from_dict({"normal": [[0, "identity", 1, "conv_1x1", "add"]],
                         "reduction": [[0, "max_pool_3x3", 1, "conv_1x1", "concat"]]})
G2 = Genotype.from_dict({"normal": [[1, "sep_conv_3x3", 0, "identity", "concat"]],
                         "reduction": [[1, "conv_1x1", 1, "max_pool_3x3", "add"]]})


def done(tid, reward, genotype=G1, seconds=1.0):
    return reports.TrialRecord(tid, "COMPLETED", reward, 100, 200, seconds, genotype)


def failed(tid, genotype=G1):
    return reports.TrialRecord(tid, "FAILED", None, 100, 200, 0.5, genotype, "ChildTrainingFailed: nan")


class FakeClock:
    """A settable clock for `ReportWriter(clock=...)` / `ProgressPrinter(clock=...)`."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def draws(monkeypatch):
    """Counts `plot_rewards` calls (they still draw) and keeps each call's series."""
    calls = []
    real = reports.plot_rewards

    def spy(series, path, direction="max", **kwargs):
        calls.append({name: list(records) for name, records in series.items()})
        real(series, path, direction, **kwargs)
    monkeypatch.setattr(report_writer, "plot_rewards", spy)
    return calls


def test_add_appends_exactly_one_row_per_trial(tmp_path):
    writer = report_writer.ReportWriter(str(tmp_path / "p"), plot_interval_s=3600)
    writer.start([])
    path = tmp_path / "p" / reports.TRIALS_CSV
    assert path.read_text() == ",".join(reports.CSV_COLUMNS) + "\n"
    added = [done("3", 0.5), failed("1"), done("2", 0.7, G2, seconds=2.25)]  # end order, not start order
    for n, record in enumerate(added, start=1):
        before = path.read_bytes()
        writer.add(record)
        after = path.read_bytes()
        assert after.startswith(before)  # appended, earlier rows untouched
        rows = reports.read_trials_csv(str(path), latest_only=False)
        assert len(rows) == n and rows[-1] == record
    assert writer.records == added and writer.num_ended == 3
    assert [r.trial_id for r in reports.read_trials_csv(str(path))] == ["3", "1", "2"]


def test_best_genotype_rewritten_only_when_the_best_improves(tmp_path):
    project = tmp_path / "p"
    best_json = project / reports.BEST_GENOTYPE_JSON
    writer = report_writer.ReportWriter(str(project), plot_interval_s=3600)
    writer.start([])
    writer.add(failed("0"))
    assert writer.best is None and not best_json.exists()
    writer.add(done("1", 0.5))
    assert Genotype.from_json(best_json.read_text()).name == "searched_trial_1"
    best_json.unlink()  # so that any rewrite shows
    for record in (done("2", 0.4), done("3", 0.5), failed("4")):  # worse, a tie, a failure
        writer.add(record)
        assert not best_json.exists(), record
        assert writer.best.trial_id == "1"
    writer.add(done("5", 0.9, G2))
    saved = Genotype.from_json(best_json.read_text())
    assert saved.name == "searched_trial_5" and saved.normal == G2.normal
    assert writer.best == reports.best_record(writer.records)

    low = report_writer.ReportWriter(str(tmp_path / "q"), direction="min", plot_interval_s=3600)
    low.start([])
    for record in (done("0", 0.5), done("1", 0.9), done("2", 0.1)):
        low.add(record)
    assert low.best.trial_id == "2" == reports.best_record(low.records, "min").trial_id


def test_plot_redrawn_at_most_once_per_interval_and_on_close(tmp_path, draws):
    clock = FakeClock()
    writer = report_writer.ReportWriter(str(tmp_path / "p"), plot_interval_s=5.0, clock=clock)
    writer.start([])
    assert writer.draw_count == 1 and len(draws) == 1
    for i, now in enumerate((1.0, 2.0, 4.9, 5.0, 6.0, 9.9, 10.5)):
        clock.now = now
        writer.add(done(str(i), 0.1 * i))
    # Draws at t=0 (start), 5.0 and 10.5 only.
    assert writer.draw_count == 3 and len(draws) == 3
    assert [len(series["p"]) for series in draws] == [0, 4, 7]
    clock.now = 10.6
    writer.close()
    assert writer.draw_count == 4 and [len(s["p"]) for s in draws][-1] == 7
    assert (tmp_path / "p" / reports.REWARDS_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    every = report_writer.ReportWriter(str(tmp_path / "q"), plot_interval_s=0.0, clock=clock)
    every.start([])
    every.add(done("0", 0.5))
    every.add(done("1", 0.6))
    assert every.draw_count == 3


def test_resume_with_start_then_add(tmp_path):
    project = tmp_path / "p"
    first = report_writer.ReportWriter(str(project), plot_interval_s=3600)
    first.start([])
    for record in (done("0", 0.5), failed("1"), done("2", 0.8, G2)):
        first.add(record)
    first.close()
    before = reports.read_trials_csv(str(project / reports.TRIALS_CSV), latest_only=False)

    resumed = report_writer.ReportWriter(str(project), plot_interval_s=3600)
    resumed.start(before)
    assert resumed.records == before and resumed.best.trial_id == "2" and resumed.num_ended == 3
    (project / reports.BEST_GENOTYPE_JSON).unlink()
    resumed.add(done("3", 0.6))
    assert not (project / reports.BEST_GENOTYPE_JSON).exists()  # not better than trial 2
    rows = reports.read_trials_csv(str(project / reports.TRIALS_CSV), latest_only=False)
    assert rows == before + [done("3", 0.6)]
    # A trials.csv from before reports were incremental also lists running trials: they are left out.
    resumed.start(rows + [reports.TrialRecord("9", "RUNNING")])
    assert resumed.records == rows == reports.read_trials_csv(str(project / reports.TRIALS_CSV))


def test_collect_records_ended_only_follows_end_order():
    def trial(tid, status, score, genotype):
        metrics = types.SimpleNamespace(exists=lambda name: name == "seconds", get_last_value=lambda name: 3.0)
        return types.SimpleNamespace(trial_id=tid, status=status, score=score, message=None, metrics=metrics,
                                     hyperparameters=hyperparameters_from_genotype(genotype, SPACE))
    oracle = types.SimpleNamespace(
        space=SPACE, start_order=["0", "1", "2"], end_order=["2", "0"],
        trials={"0": trial("0", "COMPLETED", 0.5, G1), "1": trial("1", "RUNNING", None, G2),
                "2": trial("2", "COMPLETED", 0.7, G2)})
    ended = reports.collect_records(oracle, ended_only=True)
    assert [(r.trial_id, r.reward, r.seconds) for r in ended] == [("2", 0.7, 3.0), ("0", 0.5, 3.0)]
    assert ended[0].genotype == genotype_from_hyperparameters(oracle.trials["2"].hyperparameters, SPACE)
    assert [r.trial_id for r in reports.collect_records(oracle)] == ["0", "1", "2"]


def test_sibling_projects_are_drawn(tmp_path, draws, monkeypatch):
    sibling = report_writer.ReportWriter(str(tmp_path / "random"))
    sibling.start([done("0", 0.3), done("1", 0.2), done("0", 0.4)])
    writer = report_writer.ReportWriter(str(tmp_path / "rl"), plot_interval_s=3600)
    writer.start([])
    writer.add(done("0", 0.6))
    read, real_read = [], reports.read_trials_csv
    monkeypatch.setattr(reports, "read_trials_csv", lambda path, **kw: read.append(path) or real_read(path, **kw))
    writer.close()
    assert read == [str(tmp_path / "random" / reports.TRIALS_CSV)]  # the siblings' files, never its own
    series = draws[-1]
    assert list(series) == ["rl", "random"]
    # The sibling's trial "0" ended twice: its later row counts; genotypes are not decoded for the plot.
    assert [(r.trial_id, r.reward, r.genotype) for r in series["random"]] == [("1", 0.2, None), ("0", 0.4, None)]
    assert series["rl"] == [done("0", 0.6)]
    assert (tmp_path / "rl" / reports.REWARDS_PNG).stat().st_size > 1000


def test_a_trial_that_ends_twice_counts_its_latest_row(tmp_path):
    project = tmp_path / "p"
    writer = report_writer.ReportWriter(str(project), plot_interval_s=3600)
    writer.start([])
    writer.add(done("a", 0.9))
    writer.add(done("b", 0.5, G2))
    writer.add(failed("a"))  # re-run of the best trial, which now fails
    rows = reports.read_trials_csv(str(project / reports.TRIALS_CSV), latest_only=False)
    assert [(r.trial_id, r.status) for r in rows] == [("a", "COMPLETED"), ("b", "COMPLETED"), ("a", "FAILED")]
    assert writer.records == [done("b", 0.5, G2), failed("a")] == reports.read_trials_csv(
        str(project / reports.TRIALS_CSV))
    assert writer.num_ended == 2 and writer.best.trial_id == "b"
    assert Genotype.from_json((project / reports.BEST_GENOTYPE_JSON).read_text()).name == "searched_trial_b"
    writer.add(done("b", 0.6, G2))  # the best ends again, better
    assert writer.best == done("b", 0.6, G2) and writer.records[-1] == done("b", 0.6, G2)


def test_add_checks_its_input(tmp_path):
    writer = report_writer.ReportWriter(str(tmp_path / "p"))
    with pytest.raises(RuntimeError, match="start"):
        writer.add(done("0", 0.5))
    writer.start([])
    with pytest.raises(ValueError, match="RUNNING"):
        writer.add(reports.TrialRecord("0", "RUNNING"))
    with pytest.raises(ValueError, match="direction"):
        report_writer.ReportWriter(str(tmp_path / "q"), direction="up")


def test_read_trials_csv_skips_a_half_written_last_row(tmp_path):
    path = tmp_path / "trials.csv"
    reports.write_trials_csv([done("0", 0.5), done("1", 0.6)], str(path))
    text = path.read_text()
    path.write_text(text + '2,COMPLETED,0.7,100,200,1.000,"{""normal')  # a row cut off mid-write
    assert reports.read_trials_csv(str(path)) == [done("0", 0.5), done("1", 0.6)]
    lines = text.splitlines(keepends=True)
    path.write_text(lines[0] + "0,COMPLETED\n" + lines[2])  # a short row that is not the last
    with pytest.raises(ValueError, match="row 2"):
        reports.read_trials_csv(str(path))


def test_progress_line_uses_running_state(tmp_path):
    clock = FakeClock()
    out = io.StringIO()
    printer = progress.ProgressPrinter(stream=out, clock=clock)
    printer.start(max_trials=5)
    clock.now = 10.0
    printer.trial_end(done("7", 0.25, seconds=9.5), 1, done("7", 0.25))
    assert out.getvalue() == ("[1/5] trial 7 COMPLETED reward 0.2500 best 0.2500 | 9.5s, elapsed 0:00:10, "
                              "ETA 0:00:40 | N 0id+1c1 R 0m3|1c1\n")
    clock.now = 20.0
    records = [done("7", 0.25, seconds=9.5), failed("8")]
    printer.trial_end(failed("8"), 2, records[0])
    assert out.getvalue().splitlines()[-1] == (
        "[2/5] trial 8 FAILED    reward   -    best 0.2500 | 0.5s, elapsed 0:00:20, ETA 0:00:30 "
        "| N 0id+1c1 R 0m3|1c1 | ChildTrainingFailed: nan")
    assert printer.format_line(failed("8"), 2, records[0]) == out.getvalue().splitlines()[-1]
