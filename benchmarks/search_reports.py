"""Search-report benchmark: per-trial cost of the incremental reports against a full rewrite per trial.

    python benchmarks/search_reports.py            # full run (~2 min on 2 CPU cores)
    python benchmarks/search_reports.py --quick    # smoke run (2,000 trials)

Drives `nasnet_keras.search.report_writer.ReportWriter` with ``--trials`` (default
20,000, the paper's search size) synthetic ended trials arriving back to back:
random genotypes over the paper's search space (B = 5, 13 ops), random
rewards, 2% FAILED. Each trial costs ``writer.add(record)`` (one CSV row, the
best genotype when it improves, a redraw when ``--plot_interval_s`` passed)
plus its progress line (`ProgressPrinter.trial_end`, printed to /dev/null). A
sibling project (``random``) with as many trials lies next to it, so every
redraw also reads and draws a second 20,000-trial search, as when ``rl`` and
``random`` are searched side by side.

The old approach -- after every trial: rebuild every record from the oracle
(`collect_records`), rewrite ``trials.csv``, ``best_genotype.json`` and
``rewards.png`` (siblings read with their genotypes), and a progress line
computed from every record -- is timed at a few sizes with a synthetic
oracle. It uses today's (faster) plot, so its times are a lower bound.

Goal: mean per-trial overhead at 20,000 trials <= 50 ms. Prints Markdown
tables, the date and the machine; exits 1 if the goal is missed.
"""

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from benchmarks._common import machine_info, markdown_table, median  # noqa: E402

GOAL_MS = 50.0


class _Metrics:
    """Stands in for a trial's `keras_tuner` MetricsTracker (``exists`` / ``get_last_value``)."""

    def __init__(self, values):
        self.values = values

    def exists(self, name):
        return name in self.values

    def get_last_value(self, name):
        return self.values[name]


def synthetic_trials(n, seed=0):
    """``(records, values)``: ``n`` ended `TrialRecord`s over the paper space and each one's decision values."""
    from nasnet_keras.search import reports, space as space_lib

    space = space_lib.SearchSpace()
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, space_lib.num_choices(space), size=(n, space.num_decisions))
    rewards = rng.uniform(0.5, 0.95, size=n)
    failed = rng.random(n) < 0.02
    params = rng.integers(1_000_000, 5_000_000, size=n)
    seconds = rng.uniform(60, 600, size=n)
    records, values = [], []
    for i in range(n):
        v = space_lib.indices_to_values(indices[i], space)
        genotype = space_lib.genotype_from_hyperparameters(v, space)
        common = dict(trial_id=f"{i:05d}", params=int(params[i]), mult_adds=int(params[i]) * 50,
                      seconds=float(seconds[i]), genotype=genotype)
        if failed[i]:
            records.append(reports.TrialRecord(status="FAILED", message="ChildTrainingFailed: loss is NaN", **common))
        else:
            records.append(reports.TrialRecord(status="COMPLETED", reward=float(rewards[i]), **common))
        values.append(v)
    return records, values


def incremental(records, directory, plot_interval_s):
    """Times ``add`` + the progress line of every record; returns per-trial seconds, redraw flags, close time."""
    from nasnet_keras.search import progress, report_writer

    writer = report_writer.ReportWriter(os.path.join(directory, "rl"), plot_interval_s=plot_interval_s)
    with open(os.devnull, "w") as sink:
        printer = progress.ProgressPrinter(stream=sink)
        writer.start([])
        printer.start(max_trials=len(records))
        times, redrew = [], []
        for record in records:
            draws = writer.draw_count
            start = time.perf_counter()
            writer.add(record)
            printer.trial_end(record, writer.num_ended, writer.best)
            times.append(time.perf_counter() - start)
            redrew.append(writer.draw_count > draws)
        start = time.perf_counter()
        writer.close()
        closing = time.perf_counter() - start
    return times, redrew, closing


def old_per_trial(records, values, directory, repeats):
    """Seconds of one old-style report refresh with ``len(records)`` trials ended (``repeats`` samples)."""
    from nasnet_keras.search import progress, reports, space as space_lib

    trials = {}
    for r, v in zip(records, values):
        trials[r.trial_id] = types.SimpleNamespace(
            trial_id=r.trial_id, status=r.status, score=r.reward, hyperparameters=v,
            message=r.message or None,
            metrics=_Metrics({"params": r.params, "mult_adds": r.mult_adds, "seconds": r.seconds}))
    oracle = types.SimpleNamespace(trials=trials, start_order=list(trials), space=space_lib.SearchSpace())
    project = os.path.join(directory, "rl")
    os.makedirs(project, exist_ok=True)
    out = []
    with open(os.devnull, "w") as sink:
        printer = progress.ProgressPrinter(stream=sink)
        printer.start(max_trials=len(records))
        for _ in range(repeats):
            start = time.perf_counter()
            all_records = reports.collect_records(oracle, None)
            reports.write_trials_csv(all_records, os.path.join(project, reports.TRIALS_CSV))
            best = reports.best_record(all_records)
            if best is not None:
                reports.write_best_genotype(best, os.path.join(project, reports.BEST_GENOTYPE_JSON))
            series = {"rl": all_records}
            series.update(reports.sibling_records(project))  # genotypes decoded, as before
            reports.plot_rewards(series, os.path.join(project, reports.REWARDS_PNG))
            printer.trial_end(all_records[-1], len(all_records), best)  # the old line scanned all records too
            out.append(time.perf_counter() - start)
    return out


def _ms(seconds):
    return f"{1000 * seconds:.2f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description="Search-report benchmark")
    parser.add_argument("--trials", type=int, default=20_000, help="synthetic trials for the incremental run")
    parser.add_argument("--plot_interval_s", type=float, default=5.0, help="ReportWriter's redraw interval")
    parser.add_argument("--old_sizes", default="1000,5000,20000", help="trial counts at which to time the old way")
    parser.add_argument("--quick", action="store_true", help="2,000 trials, old way at 500 and 2,000 (smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.old_sizes = 2_000, "500,2000"
    sizes = [int(s) for s in args.old_sizes.split(",") if s]
    from nasnet_keras.search import reports

    info = machine_info()
    t0 = time.perf_counter()
    records, values = synthetic_trials(max([args.trials] + sizes))
    print(f"made {len(records)} synthetic trials in {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)

    print("## Search report benchmark\n")
    print(f"Date: {datetime.date.today().isoformat()}. Machine: {platform.platform()}, {os.cpu_count()} cores; "
          + "; ".join(f"{k}: {v}" for k, v in info.items()) + "\n")

    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "random"))
        reports.write_trials_csv(records[:args.trials], os.path.join(tmp, "random", reports.TRIALS_CSV))
        times, redrew, closing = incremental(records[:args.trials], tmp, args.plot_interval_s)
    plain = [t for t, r in zip(times, redrew) if not r]
    draws = [t for t, r in zip(times, redrew) if r]
    n = len(times)
    print(f"### Incremental (`ReportWriter`), {n:,} trials back to back, redraw every >= "
          f"{args.plot_interval_s:g} s, sibling project of {n:,} trials\n")
    rows = [(f"add + progress line, {len(plain):,} trials without a redraw", _ms(median(plain)),
             _ms(statistics.fmean(plain)), _ms(max(plain)))]
    if draws:
        rows.append((f"trials with a redraw ({len(draws)})", _ms(median(draws)), _ms(statistics.fmean(draws)),
                     _ms(max(draws))))
    rows.append((f"all {n:,} trials, incl. the redraws", _ms(median(times)), _ms(statistics.fmean(times)),
                 _ms(max(times))))
    rows.append(("close() (final redraw)", _ms(closing), _ms(closing), _ms(closing)))
    print(markdown_table(["per trial", "median ms", "mean ms", "max ms"], rows) + "\n")

    print("### Old approach: full rebuild + rewrite + redraw after every trial\n")
    old_rows = []
    for size in sizes:
        repeats = 3 if size <= 1000 else (2 if size <= 5000 else 1)  # ~20 s per refresh at 20,000
        with tempfile.TemporaryDirectory() as tmp:
            os.makedirs(os.path.join(tmp, "random"))
            reports.write_trials_csv(records[:size], os.path.join(tmp, "random", reports.TRIALS_CSV))
            samples = old_per_trial(records[:size], values[:size], tmp, repeats)
        old_rows.append((f"{size:,}", repeats, _ms(median(samples)), _ms(max(samples)),
                         f"{median(samples) / statistics.fmean(times):.0f}x" if size == n else ""))
        print(f"old approach at {size}: {[round(s, 2) for s in samples]} s", file=sys.stderr, flush=True)
    print(markdown_table(["trials ended", "repeats", "median ms / trial", "max ms", "vs incremental mean"],
                         old_rows) + "\n")

    mean_ms = 1000 * statistics.fmean(times)
    ok = mean_ms <= GOAL_MS
    print(f"Goal: mean per-trial overhead at {n:,} trials <= {GOAL_MS:g} ms: "
          f"{'met' if ok else 'MISSED'} ({mean_ms:.2f} ms).")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
