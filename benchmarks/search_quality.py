"""Does weight sharing find better cells than random here? RL vs random vs ENAS vs ENAS-random at equal compute.

    python benchmarks/search_quality.py                          # quick preset, 3 seeds (hours on 2 CPU cores)
    python benchmarks/search_quality.py --seeds=1 --retrain_repeats=1 --kendall_architectures=4 --budget_s=60 \\
        --enas_flags=--epochs=1,--final_architectures=4,--controller_steps=2   # a smoke run (minutes)

All four methods search the same space (B = 3, ENAS' 5 ops, add combine) on the built-in digits data with the
same child (N = 1, F = 8):

1. ``enas`` and ``enas_random`` run `python -m search.run` with the quick weight-sharing preset; their wall
   clock sets the budget of the others (``--budget_s`` when given);
2. ``rl`` and ``random`` run the quick RL preset's search with unlimited trials and are stopped (SIGINT) when
   the budget is spent; their ``best_genotype.json`` is the best of the trials finished by then;
3. each method's best genotype per seed is trained from scratch ``--retrain_repeats`` times with one recipe
   (`ChildTrainer`: ``--retrain_epochs`` epochs, the quick child) and scored on the reward set: mean and 95%
   confidence interval (Student t over seeds x repeats) per method;
4. Kendall's tau between the shared-weight reward and the stand-alone accuracy of ``--kendall_architectures``
   architectures from the first ``enas`` run's ``trials.csv`` (spread over its reward range).

Writes ``search_quality.json`` and ``search_quality.png`` in ``--directory`` and prints a Markdown table.
A run is resumable: finished searches (those with ``best_genotype.json``) and retrain results are reused.
CIFAR-10 at paper scale on GPUs: the same script with ``--dataset=cifar10 --preset=paper`` (needs a prepared
tfds cifar10; budgets of GPU-days).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
METHODS = ("enas", "enas_random", "rl", "random")
SPACE_FLAGS = ["--num_blocks=3", "--ops=sep_conv_3x3,sep_conv_5x5,avg_pool_3x3,max_pool_3x3,identity",
               "--combines=add"]


def _search(method, seed, args, budget_s, log):
    directory = os.path.join(args.directory, f"{method}_seed{seed}")
    project = os.path.join(directory, method)
    if os.path.exists(os.path.join(project, "best_genotype.json")) and method.startswith("enas"):
        return project, None
    command = [sys.executable, "-m", "search.run", f"--oracle={method}", f"--seed={seed}", f"--preset={args.preset}",
               f"--directory={directory}", *SPACE_FLAGS]
    if args.dataset:
        command.append(f"--dataset={args.dataset}")
    if method.startswith("enas"):
        command += [f for f in args.enas_flags.split(",") if f]
    else:
        command += ["--max_trials=100000", "--overwrite"]
    start = time.monotonic()
    with open(log, "w") as out:
        # Own process group, SIGINT restored: a benchmark started in the background (`cmd &`) passes SIGINT on
        # ignored, and the search's local workers must stop with the chief.
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            proc.wait(timeout=None if budget_s is None else budget_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    seconds = time.monotonic() - start
    if not os.path.exists(os.path.join(project, "best_genotype.json")):
        raise RuntimeError(f"{method} seed {seed} produced no best_genotype.json; see {log}")
    return project, seconds


def _stand_alone(genotype_json, seed, args, data):
    from nasnet_keras.genotypes import Genotype
    from nasnet_keras.search.child import ChildTrainer

    trainer = ChildTrainer(data, epochs=args.retrain_epochs, num_cells=1, filters=8, learning_rate=0.1,
                           momentum=0.9, weight_decay=5e-4, drop_path_keep_prob=1.0)
    return trainer.train(Genotype.from_json(genotype_json), seed=seed)["val_accuracy"]


def _ci95(values):
    from scipy import stats

    values = np.asarray(values, float)
    if len(values) < 2:
        return float(values.mean()), float("nan")
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean()), float(half)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--directory", default="benchmark_runs/search_quality")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--dataset", default=None)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--retrain_repeats", type=int, default=3)
    parser.add_argument("--retrain_epochs", type=int, default=5)
    parser.add_argument("--kendall_architectures", type=int, default=20)
    parser.add_argument("--budget_s", type=float, default=None, help="Wall clock per search (default: enas's).")
    parser.add_argument("--enas_flags", default="", help="Extra comma-separated flags for the enas searches.")
    args = parser.parse_args(argv)
    os.makedirs(args.directory, exist_ok=True)
    results_path = os.path.join(args.directory, "search_quality.json")
    results = json.load(open(results_path)) if os.path.exists(results_path) else {"searches": {}, "retrain": {}}

    from benchmarks._common import machine_info
    from nasnet_keras.search import reports
    from nasnet_keras.search.data import load_dataset

    results["machine"], results["date"] = machine_info(), time.strftime("%Y-%m-%d")
    budget = args.budget_s
    if budget is None:  # a resumed run keeps the budget its finished enas searches set
        spent = [s["seconds"] for k, s in results["searches"].items() if k.startswith("enas") and s["seconds"]]
        budget = max(spent) if spent else None
    for method in METHODS:
        for seed in range(args.seeds):
            key = f"{method}/{seed}"
            if key in results["searches"]:
                continue
            log = os.path.join(args.directory, f"{method}_seed{seed}.log")
            project, seconds = _search(method, seed, args, None if method.startswith("enas") else budget, log)
            if method.startswith("enas") and seconds is not None and args.budget_s is None:
                budget = seconds if budget is None else max(budget, seconds)
            with open(os.path.join(project, "best_genotype.json")) as f:
                results["searches"][key] = {"project": project, "seconds": seconds, "best": f.read()}
            json.dump(results, open(results_path, "w"), indent=1)
            print(f"{key}: {seconds and round(seconds)} s", flush=True)

    data = load_dataset(args.dataset or "digits", batch_size=32, seed=0)
    for key, search in results["searches"].items():
        for repeat in range(args.retrain_repeats):
            rkey = f"{key}/{repeat}"
            if rkey not in results["retrain"]:
                results["retrain"][rkey] = _stand_alone(search["best"], 1000 + repeat, args, data)
                json.dump(results, open(results_path, "w"), indent=1)
    per_method = {m: [v for k, v in results["retrain"].items() if k.split("/")[0] == m] for m in METHODS}

    records = reports.read_trials_csv(os.path.join(results["searches"]["enas/0"]["project"], "trials.csv"))
    records = sorted((r for r in records if r.reward is not None), key=lambda r: r.reward)
    picks = [records[int(i)] for i in np.linspace(0, len(records) - 1, min(args.kendall_architectures, len(records)))]
    pairs = results.setdefault("kendall", {})
    for r in picks:
        if r.trial_id not in pairs:
            pairs[r.trial_id] = [r.reward, _stand_alone(r.genotype.to_json(), 0, args, data)]
            json.dump(results, open(results_path, "w"), indent=1)
    from scipy import stats

    shared, alone = zip(*pairs.values())
    tau, p_value = stats.kendalltau(shared, alone)
    results["kendall_tau"], results["kendall_p"] = float(tau), float(p_value)
    json.dump(results, open(results_path, "w"), indent=1)

    print(f"\nSearch quality on {args.dataset or 'digits'} ({results['date']}, {results['machine']['cpu']}, "
          f"{results['machine']['cores']} cores); budget per search {budget and round(budget)} s\n")
    print("| method | stand-alone reward-set accuracy, mean [95% CI] | runs |")
    print("|---|---|---|")
    for m in METHODS:
        mean, half = _ci95(per_method[m])
        print(f"| {m} | {mean:.3f} +- {half:.3f} | {len(per_method[m])} |")
    print(f"\nKendall tau (shared-weight reward vs stand-alone accuracy, {len(pairs)} architectures): "
          f"{tau:.2f} (p = {p_value:.2f})")
    _plot(per_method, shared, alone, os.path.join(args.directory, "search_quality.png"))


def _plot(per_method, shared, alone, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for i, m in enumerate(METHODS):
        left.plot([i] * len(per_method[m]), per_method[m], "o", alpha=0.6)
    left.set_xticks(range(len(METHODS)), METHODS)
    left.set_ylabel("stand-alone accuracy of the best cell")
    right.plot(shared, alone, "o")
    right.set_xlabel("shared-weight reward")
    right.set_ylabel("stand-alone accuracy")
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
