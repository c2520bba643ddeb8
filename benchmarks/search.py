"""Cell-search benchmark: controller cost, memory over many trials, trials per hour.

    python benchmarks/search.py            # full run (~10 min on 2 CPU cores)
    python benchmarks/search.py --quick    # smoke run

Measures, in one process:
1. controller cost per trial (sampling one architecture + the PPO update
   amortized over its batch) against one training step of the quick preset's
   child network (median of interleaved repeats; ratio);
2. resident memory (RSS) after each of 30 tiny child trials run by
   `CellSearchTuner` (goal: growth <= 10% from trial 5 to the last);
3. the quick preset (`python -m search.run` with no flags, 12 children) end to
   end as a user runs it: wall time, trials per hour, and where a trial's
   time goes (process start + data, build, `model_cost`, tracing + first
   step, remaining steps, evaluation, saving, and everything outside the
   child: IPC, oracle, reports, Keras Tuner), from the phase times each child
   records (`ChildTrainer.train`);
4. ``python -m search.run --oracle=enas`` (the quick weight-sharing preset) end
   to end: wall time, architectures scored, seconds per epoch.
Prints Markdown tables and the machine. ``--only quick`` runs one section.
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# This file is itself named "search": drop its folder from the path so `import search.run` finds the CLI.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

import numpy as np  # noqa: E402

from benchmarks._common import interleaved_samples, machine_info, markdown_table, median  # noqa: E402


def _rss_mb(pid="self"):
    """Resident memory of a process in MB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def _quick_settings():
    from search.run import PRESETS
    return PRESETS["quick"]


def controller_vs_child(repeats):
    import keras

    from nasnet_keras.search import PPOController, SearchSpace, genotype_from_hyperparameters, num_choices
    from nasnet_keras.search.data import load_dataset
    from nasnet_keras import NASNet

    q = _quick_settings()
    rows = []
    for label, space, batch in (("paper space (B=5, 50 decisions), update every 20", SearchSpace(), 20),
                                (f"quick space (B={q['num_blocks']}), update every {q['controller_batch_size']}",
                                 SearchSpace(num_blocks=q["num_blocks"]), q["controller_batch_size"])):
        ctrl = PPOController(num_choices(space), batch_size=batch, seed=0)
        for _ in range(batch):                       # warm up, including the first (compiling) update
            d, lp = ctrl.sample()
            ctrl.add_reward(d, lp, float(np.random.rand()))
        sample_times, update_times = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            d, lp = ctrl.sample()
            sample_times.append(time.perf_counter() - t)
        for _ in range(max(3, repeats // 10)):
            for _ in range(batch - 1):
                d, lp = ctrl.sample()
                ctrl.add_reward(d, lp, float(np.random.rand()))
            d, lp = ctrl.sample()
            t = time.perf_counter()
            ctrl.add_reward(d, lp, float(np.random.rand()))   # triggers the update
            update_times.append(time.perf_counter() - t)
        rows.append((label, median(sample_times), median(update_times) / batch))

    data = load_dataset("digits", batch_size=q["batch_size"])
    space = SearchSpace(num_blocks=q["num_blocks"])
    ctrl = PPOController(num_choices(space), seed=1)
    from nasnet_keras.search.space import indices_to_values
    genotype = genotype_from_hyperparameters(indices_to_values(ctrl.sample()[0], space), space)
    model = NASNet(genotype, num_cells=q["num_cells"], filters=q["filters"], stem="cifar",
                   input_shape=data.input_shape, classes=data.num_classes)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy")
    x, y = next(iter(data.train))
    model.train_on_batch(x, y)
    step = interleaved_samples({"child": lambda: model.train_on_batch(x, y)}, repeats)["child"]
    child_step = median(step)
    table = [(label, f"{s * 1e3:.2f}", f"{u * 1e3:.2f}", f"{(s + u) * 1e3:.2f}", f"{child_step * 1e3:.1f}",
              f"{(s + u) / child_step:.3f}") for label, s, u in rows]
    return markdown_table(["controller", "sample ms", "PPO update ms / trial", "controller ms / trial",
                           "one child step ms (quick child)", "ratio"], table)


def memory_over_trials(num_trials, examples):
    from nasnet_keras.search import RandomCellOracle, SearchSpace
    from nasnet_keras.search.tuner import CellSearchTuner

    q = _quick_settings()
    rss = []

    class Recording(CellSearchTuner):
        def on_trial_end(self, trial):
            super().on_trial_end(trial)
            # The search process plus the child-training worker subprocess it keeps (recycled every
            # trials_per_worker trials).
            worker = _rss_mb(self.child_pid) if self.child_pid else 0.0
            rss.append((_rss_mb(), worker))

    space = SearchSpace(num_blocks=q["num_blocks"])
    # A dataset *name* (as the CLI passes) keeps the default isolation: children train in a worker subprocess.
    data = "digits"
    with tempfile.TemporaryDirectory() as tmp:
        tuner = Recording(RandomCellOracle(max_trials=num_trials, space=space, seed=0), data, epochs=1,
                          data_options=dict(batch_size=q["batch_size"], max_train_examples=examples),
                          num_cells=q["num_cells"], filters=q["filters"], space=space, verbose=0,
                          directory=tmp, project_name="memory", overwrite=True)
        start = time.perf_counter()
        tuner.search()
        seconds = time.perf_counter() - start
    total = [a + b for a, b in rss]
    base = total[min(4, len(total) - 1)]
    growth = (total[-1] - base) / base
    rows = [(i + 1, f"{a:.0f}", f"{b:.0f}", f"{a + b:.0f}") for i, (a, b) in enumerate(rss)
            if i in (0, 4, 9, 14, 18, 19, 24, len(rss) - 1)]
    table = markdown_table(["trial", "search process RSS MB", "worker RSS MB", "total MB"], rows)
    summary = (f"Total RSS after trial 5: {base:.0f} MB, after trial {len(total)}: {total[-1]:.0f} MB, growth "
               f"{growth * 100:+.1f}% (goal <= +10%); peak {max(total):.0f} MB; search process alone "
               f"{rss[4][0]:.0f} -> {rss[-1][0]:.0f} MB; {len(total)} trials in {seconds:.0f} s")
    return table, summary, growth


PHASES = (("time_process_start", "child process start, imports, data (once per process)"),
          ("time_build", "build the child"), ("time_cost", "model_cost (params, mult-adds)"),
          ("time_first_train_step", "first train step (graph tracing, grappler, step)"),
          ("time_train_steps", "remaining train steps"),
          ("time_first_eval_step", "first scoring batch (eager, 256 images)"),
          ("time_eval_steps", "remaining scoring batches"), ("time_keep_best", "save the best child's weights"))


def quick_preset_breakdown(extra_flags=()):
    """Runs ``python -m search.run`` (quick preset) in a fresh directory.

    Returns:
        (wall seconds, trials, child seconds summed over trials, table rows).
    """
    import json
    import subprocess

    root = os.path.dirname(_HERE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "search.run", "--directory", tmp, "--verbose=0", *extra_flags], cwd=tmp, env=env,
                       check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        project = os.path.join(tmp, "rl")
        trials = []
        for name in sorted(os.listdir(project)):
            if name.startswith("trial_"):
                with open(os.path.join(project, name, "trial.json")) as f:
                    metrics = json.load(f)["metrics"]["metrics"]
                trials.append({k: v["observations"][-1]["value"][0] for k, v in metrics.items()})
    n = len(trials)
    totals = {key: sum(t.get(key, 0.0) for t in trials) for key, _ in PHASES}
    child = sum(t["seconds"] for t in trials) + totals["time_process_start"]
    other = child - sum(totals.values())
    rows = [(label, f"{totals[key] / n:.2f}", f"{100 * totals[key] / child:.0f}%") for key, label in PHASES]
    rows.append(("rest of the child (clear_session, fit / evaluate set-up and teardown)", f"{other / n:.2f}",
                 f"{100 * other / child:.0f}%"))
    rows.append(("child total", f"{child / n:.2f}", "100%"))
    return wall, n, child, rows


def weight_sharing_quick(oracle="enas"):
    """Runs ``python -m search.run --oracle=<oracle>`` (quick preset) in a fresh directory.

    Returns:
        (wall seconds, architectures scored, per-epoch history rows, seconds of the final scoring).
    """
    import csv
    import subprocess

    root = os.path.dirname(_HERE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "search.run", f"--oracle={oracle}", "--directory", tmp], cwd=tmp,
                       env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        project = os.path.join(tmp, oracle)
        with open(os.path.join(project, "history.csv")) as f:
            history = list(csv.DictReader(f))
        with open(os.path.join(project, "trials.csv")) as f:
            final = list(csv.DictReader(f))
    scored = len(final) + sum(int(r["controller_rewards"]) for r in history)
    scoring = sum(float(r["seconds"]) for r in final)
    return wall, scored, history, scoring


def main(argv=None):
    parser = argparse.ArgumentParser(description="Cell-search benchmark")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and trials (smoke run)")
    parser.add_argument("--only", choices=("controller", "memory", "quick", "enas"), help="run one section")
    args = parser.parse_args(argv)
    info = machine_info()
    repeats = 20 if args.quick else 100
    print("## Search benchmark\n")
    print("Machine: " + "; ".join(f"{k}: {v}" for k, v in info.items()) + "\n")
    if args.only in (None, "controller"):
        print("### Controller cost per trial vs one child training step\n")
        print(controller_vs_child(repeats) + "\n")
    if args.only in (None, "memory"):
        print("### Memory over tiny child trials (RandomCellOracle, quick child, 128 digits, 1 epoch)\n")
        table, summary, growth = memory_over_trials(8 if args.quick else 30, 128)
        print(table + "\n")
        print(summary + "\n")
    if args.only in (None, "quick"):
        for title, extra in (("quick preset, default: two children at once", ()),
                             ("reference: one child at a time (--local_workers=1)", ("--local_workers=1",))):
            print(f"### `python -m search.run` end to end, {title}\n")
            wall, n, child, rows = quick_preset_breakdown(extra)
            print(f"{n} trials in {wall:.0f} s ({wall / 60:.2f} min), {3600 * n / wall:.0f} trials per hour; "
                  f"{wall / n:.1f} s of wall per trial for {child / n:.1f} s of child time per trial (children "
                  f"overlap x{child / wall:.2f}; the rest of the wall is CLI start, oracle, IPC, reports and Keras "
                  "Tuner)\n")
            print(markdown_table(["phase (per child)", "s per child", "share of child time"], rows) + "\n")
    if args.only in (None, "enas"):
        print("### `python -m search.run --oracle=enas` end to end (quick preset, weight sharing)\n")
        wall, scored, history, scoring = weight_sharing_quick()
        rows = [(r["epoch"], f"{float(r['train_seconds']):.1f}", f"{float(r['seconds']) - float(r['train_seconds']):.1f}",
                 f"{float(r['accuracy']):.3f}", f"{float(r['controller_reward']):.3f}") for r in history]
        print(f"{scored} architectures scored with the shared weights in {wall:.0f} s ({wall / 60:.2f} min; goal: "
              f">= 500 in <= 10 min); final scoring of {scored - sum(int(r['controller_rewards']) for r in history)} "
              f"architectures on the whole reward set: {scoring:.0f} s\n")
        print(markdown_table(["epoch", "training s", "controller phase s", "training accuracy",
                              "mean controller reward"], rows) + "\n")


if __name__ == "__main__":
    main()
