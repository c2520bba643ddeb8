"""``python -m search.run --oracle=enas|enas_random``: the weight-sharing search from resolved CLI settings.

Same data handling, ``--directory/--project_name/--overwrite/--seed`` and
output files as the other oracles (``trials.csv``, ``best_genotype.json``,
``rewards.png``, plus ``history.csv`` and the checkpoint); progress is one
line per epoch (loss, mean controller reward, best so far, ETA).
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Callable, Dict

__all__ = ["run_weight_sharing"]


def run_weight_sharing(s: Dict[str, Any], error: Callable[[str], int]) -> int:
    """Runs (or resumes) the search of settings ``s``; returns the exit code (``error(message)`` on failure)."""
    from nasnet_keras.search import progress, reports
    from nasnet_keras.search.child import resolve_distribution_strategy
    from nasnet_keras.search.data import DatasetNotPreparedError, load_dataset
    from nasnet_keras.search.roles import is_distributed_worker, serves_workers
    from nasnet_keras.search.space import SearchSpace
    from nasnet_keras.search.weight_sharing.config import WeightSharingConfig
    from nasnet_keras.search.weight_sharing.outputs import SearchDiverged
    from nasnet_keras.search.weight_sharing.search_loop import WeightSharingSearch
    from nasnet_keras.search.weight_sharing.shared_network import check_shareable_space
    from nasnet_keras.search.weight_sharing.shared_trainer import SharedTrainingDiverged

    if is_distributed_worker() or serves_workers():
        return error("--oracle=enas / enas_random trains one shared network in one process (use --distribution "
                     "for several GPUs); Keras Tuner's chief / worker mode does not apply. Unset "
                     "KERASTUNER_TUNER_ID to run it.")
    project_dir = os.path.join(s["directory"], s["project_name"])
    try:
        space = check_shareable_space(SearchSpace(num_blocks=s["num_blocks"], ops=s["ops"], combines=s["combines"]))
        config = WeightSharingConfig.from_settings(s)
    except ValueError as err:
        return error(str(err).replace("SearchSpace: ", "--", 1))
    print(f"NASNet weight-sharing search ({s['preset']} preset): oracle {s['oracle']}, dataset {s['dataset']}, "
          f"{config.epochs} epochs, N={config.num_cells}, F={config.filters}, B={space.num_blocks}, "
          f"{len(space.ops)} ops, batch {config.batch_size}, lr {config.learning_rate} -> {project_dir}", flush=True)
    import tensorflow as tf

    # Each op layer has its own tf.function, traced once; TensorFlow's heuristic takes many functions each
    # traced once for one function retraced in a loop and warns. The shared network's tests assert the truth.
    tf.get_logger().addFilter(lambda record: "triggered tf.function retracing" not in record.getMessage())
    if s["overwrite"] and os.path.isdir(project_dir):
        shutil.rmtree(project_dir)
    try:
        data = load_dataset(s["dataset"], batch_size=config.batch_size, seed=s["seed"], data_dir=s["data_dir"],
                            download=s["download"], max_train_examples=s["max_train_examples"])
        search = WeightSharingSearch(
            data, space, config, oracle=s["oracle"], project_dir=project_dir, seed=s["seed"],
            identity=dict(dataset=s["dataset"], max_train_examples=s["max_train_examples"]),
            strategy=resolve_distribution_strategy(s["distribution"]), verbose=min(int(s["verbose"]), 1))
        result = search.run()
    except (ValueError, DatasetNotPreparedError, ImportError) as err:
        message = str(err)
        if message.startswith("Cannot resume"):
            message += (" Repeat the flags of the run that created the project, add --overwrite to start over, "
                        "or pick another --project_name.")
        return error(message)
    except (SharedTrainingDiverged, SearchDiverged) as err:
        return error(str(err))
    except KeyboardInterrupt:
        print(f"\nInterrupted. Re-run the same command to resume the search in {project_dir}.", flush=True)
        return 130
    best = result["best"]
    print(f"\nDone: {result['scored']} architectures scored with the shared weights ({len(result['records'])} "
          f"on the whole reward set). Outputs in {os.path.abspath(project_dir)}:")
    for name in (reports.TRIALS_CSV, reports.BEST_GENOTYPE_JSON, reports.REWARDS_PNG, "history.csv"):
        print(f"  {os.path.join(project_dir, name)}")
    if best is None:
        return error("no architecture was scored, so there is no best genotype.")
    print(f"Best (shared weights): {best.reward:.4f} on the reward set, {best.params:,} params, "
          f"{best.mult_adds:,} mult-adds: {progress.short_genotype(best.genotype)}")
    print("Shared-weight accuracy ranks architectures only roughly; train the best from scratch:\n"
          f"  python -m search.train --genotype={os.path.abspath(project_dir)}", flush=True)
    return 0
