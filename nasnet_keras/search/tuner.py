"""`CellSearchTuner`: the Keras Tuner glue of the cell search.

Each trial's cell decisions (from `NASNetRLOracle`, `RandomCellOracle` or any
oracle over `nasnet_keras.search.space`) are decoded into a `Genotype`, and
one child network is trained and scored by the recipe in
`nasnet_keras.search.child` -- by default in a recycled subprocess
(`nasnet_keras.search.child_process`: bounded memory, a no-progress timeout,
crash detection), else in this process.

Chief / worker mode: workers use a `ChiefClient` (waits out a restarting
chief), refuse child flags that differ from the chief's, beat only while the
child makes progress and carry failure reasons to the chief, which writes the
reports live (the oracle's ``trial_listeners``). Only the best child's weights
are kept (``best_model.weights.h5``; not in chief / worker mode).
"""

from __future__ import annotations

import copy
import json
import os
import time
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

import keras
import keras_tuner
import tensorflow as tf
from keras_tuner.engine import trial as trial_module

from nasnet_keras import genotypes as gt
from nasnet_keras.search import project, reports
from nasnet_keras.search import space as space_lib
from nasnet_keras.search.checks import check_child_settings, check_optional_seconds, check_positive, check_seed
from nasnet_keras.search.chief_rpc import serve_oracle, use_chief_client
from nasnet_keras.search.child import (DISTRIBUTIONS, ChildTrainer, ChildTrainingFailed,
                                       resolve_distribution_strategy, strategy_kind)
from nasnet_keras.search.child_process import ISOLATIONS, ChildProcess, choose_isolation, limit_parent_gpu_memory
from nasnet_keras.search.data import SearchData, resolve_search_data
from nasnet_keras.search.fault_tolerance import TooManyFailedTrialsError, TrialHeartbeat, attach_report, trial_attempt, with_attempt
from nasnet_keras.search.oracles import CHILD_CONFIG_HP
from nasnet_keras.search.progress import keras_tuner_debug
from nasnet_keras.search.report_writer import ReportWriter, SearchLog
from nasnet_keras.search.roles import is_distributed_worker, serves_workers

__all__ = ["CellSearchTuner", "ChildTrainer", "ChildTrainingFailed", "DISTRIBUTIONS", "ISOLATIONS",
           "TooManyFailedTrialsError", "resolve_distribution_strategy"]

#: Most seconds between two heartbeats of a worker whose child makes progress.
HEARTBEAT_SECONDS = 10.0


class CellSearchTuner(keras_tuner.Tuner):
    """A Keras Tuner `Tuner` whose trials train NASNet child networks.

    Args:
        oracle: a `keras_tuner.Oracle` whose hyperparameters are the cell
            decisions of `nasnet_keras.search.space` (`NASNetRLOracle`,
            `RandomCellOracle`, or any oracle built on
            `space.build_hyperparameters(space)`).
        data: the child-training data: a dataset name or directory for
            `load_dataset` (with ``data_options``), ``None`` for its default
            (``"digits"``), or a `SearchData` (then ``isolation="none"``).
        epochs: E, training epochs per child (paper: 20).
        num_cells: N, normal cells per stack of the child (paper: 2).
        filters: cell filters of the first stack (F; doubled at each
            reduction). Default 32 (TF-slim's CIFAR ``num_conv_filters``).
        learning_rate: initial SGD learning rate, decayed to 0 by one cosine
            period over ``epochs * steps_per_epoch`` steps (default 0.025,
            TF-slim's CIFAR value for batch size 32).
        momentum: SGD momentum (paper: 0.9).
        weight_decay: L2 weight decay on kernels, slim convention (gradient
            term ``weight_decay * w``); default 5e-4. 0 turns it off.
        drop_path_keep_prob: ScheduledDropPath final keep probability for the
            child (default 1.0: off).
        space: the `SearchSpace` to decode trials with; default the oracle's
            ``space`` attribute, else the paper's space.
        distribution_strategy: a name (see `resolve_distribution_strategy`,
            default ``"auto"``) or a `tf.distribute.Strategy` instance
            (then ``isolation="none"``).
        data_options: keyword arguments for `load_dataset` when ``data`` is a
            name or ``None`` (e.g. ``batch_size``, ``max_train_examples``,
            ``data_dir``, ``seed``).
        isolation: ``"process"`` (train in a worker subprocess, recycled
            every ``trials_per_worker`` trials: memory stays bounded),
            ``"none"`` (train in this process), or ``None`` (default:
            ``"process"`` when possible -- data given by name, no custom
            `build_child`, strategy given by name -- else ``"none"``).
        trials_per_worker: trials before the child process is replaced (default 20).
        trial_timeout: seconds a child may make no progress (no finished
            batch; graph tracing before the first step counts as silence)
            before its process is killed and the trial fails as INVALID (the
            oracle re-runs it ``max_retries_per_trial`` times). Default 900;
            ``None``: wait forever. Needs ``isolation="process"``. A fresh
            child process's start-up may take ``max(trial_timeout,
            child_process.STARTUP_TIMEOUT_S)``.
        chief_timeout: distributed workers: seconds to wait for an
            unreachable chief (restarting, say) before giving up with a clear
            error (default 600).
        seed: int; when given each trial seeds Keras (weights init, dropout)
            with a value derived from it and the trial id, so a re-run trial
            starts from the same weights. ``None``: not seeded.
        keep_best_model: save the weights of the best child so far to
            ``<project>/best_model.weights.h5`` (one file, overwritten; not
            in Keras Tuner's distributed chief / worker mode).
        write_reports: keep ``trials.csv``, ``best_genotype.json`` and
            ``rewards.png`` current in the project directory as trials end
            (`nasnet_keras.search.reports.ReportWriter`; on the chief in
            chief / worker mode).
        verbose: 1 prints one progress line per trial, 0 is silent, 2 also
            shows Keras' per-epoch training output (with process isolation
            it goes to the child's log, ``<project>/worker_<tuner_id>.log``).
        max_model_size: children with more trainable parameters are not
            trained; their trials FAIL (as in `keras_tuner.Tuner`).
        directory, project_name, overwrite, tuner_id: as in
            `keras_tuner.Tuner` (``overwrite=False`` resumes a project).
        **kwargs: other `keras_tuner.Tuner` arguments.

    Attributes:
        data: the `SearchData` (loaded once, in this process).
        trainer: the in-process `ChildTrainer` (also used by `load_model`).
        search_log: the `SearchLog` (progress lines and report files as trials end).

    Raises:
        ValueError: bad arguments, or resuming a project that was created
            with a different child-training setup (dataset, epochs, ...) or
            search space (raised by the oracle). Nothing is deleted then.
    """

    def __init__(
        self,
        oracle: keras_tuner.Oracle,
        data: Union[SearchData, str, os.PathLike, None] = None,
        *,
        epochs: int = 20,
        num_cells: int = 2,
        filters: int = 32,
        learning_rate: float = 0.025,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        drop_path_keep_prob: float = 1.0,
        space: Optional[space_lib.SearchSpace] = None,
        distribution_strategy: Union[str, tf.distribute.Strategy, None] = "auto",
        data_options: Optional[Mapping[str, Any]] = None,
        isolation: Optional[str] = None,
        trials_per_worker: int = 20,
        trial_timeout: Optional[float] = 900.0,
        chief_timeout: float = 600.0,
        seed: Optional[int] = None,
        keep_best_model: bool = True,
        write_reports: bool = True,
        verbose: int = 1,
        directory: Optional[str] = None,
        project_name: Optional[str] = None,
        overwrite: bool = False,
        max_model_size: Optional[int] = None,
        **kwargs,
    ):
        check_child_settings(epochs=epochs, num_cells=num_cells, filters=filters, learning_rate=learning_rate,
                             momentum=momentum, weight_decay=weight_decay, drop_path_keep_prob=drop_path_keep_prob,
                             max_model_size=max_model_size, trials_per_worker=trials_per_worker)
        self.seed = check_seed("seed", seed)
        self.trial_timeout = check_optional_seconds("trial_timeout", trial_timeout, "wait forever")
        self.chief_timeout = check_positive("chief_timeout", chief_timeout, float)
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2; got {verbose!r}.")
        if distribution_strategy is not None and not isinstance(distribution_strategy, tf.distribute.Strategy):
            strategy_kind(distribution_strategy, 0)  # checks the name
        space = space or getattr(oracle, "space", None) or space_lib.SearchSpace()
        if not isinstance(space, space_lib.SearchSpace):
            raise ValueError(f"space must be a SearchSpace; got {type(space).__name__}.")
        blockers = [why for why, applies in (
            ("build_child is overridden", type(self).build_child is not CellSearchTuner.build_child),
            ("data is a SearchData object (pass its name and data_options instead)", isinstance(data, SearchData)),
            ("distribution_strategy is a Strategy instance (pass its name instead)",
             isinstance(distribution_strategy, tf.distribute.Strategy))) if applies]
        self.isolation = choose_isolation(isolation, blockers)

        # Load the data first: a bad dataset fails before any project file is touched.
        self.data, self._data_kwargs = resolve_search_data(data, data_options)
        if self.isolation == "process":
            limit_parent_gpu_memory()
            strategy = None  # the child process resolves the name itself
        else:
            strategy = resolve_distribution_strategy(distribution_strategy)
        self._distribution_name = distribution_strategy if isinstance(distribution_strategy, str) else "default"

        self.space = space
        self.trials_per_worker = int(trials_per_worker)
        self.keep_best_model = bool(keep_best_model)
        self.write_reports = bool(write_reports)
        self.verbose = int(verbose)
        self._trainer_kwargs = dict(epochs=int(epochs), num_cells=int(num_cells), filters=int(filters),
                                    learning_rate=float(learning_rate), momentum=float(momentum),
                                    weight_decay=float(weight_decay),
                                    drop_path_keep_prob=float(drop_path_keep_prob), verbose=self.verbose,
                                    max_model_size=None if max_model_size is None else int(max_model_size))
        self.trainer = ChildTrainer(self.data, strategy=strategy, builder=self.build_child, **self._trainer_kwargs)
        self._child: Optional[ChildProcess] = None
        self._callbacks: list = []
        self._failures: Dict[str, Dict[str, Any]] = {}  # trial id -> report of its failure (until ended)
        local_timeout = getattr(oracle, "worker_timeout", None)
        self._heartbeat_s = HEARTBEAT_SECONDS if not local_timeout else min(HEARTBEAT_SECONDS, local_timeout / 4)

        super().__init__(oracle=oracle, hypermodel=None, distribution_strategy=strategy,
                         max_model_size=max_model_size, directory=directory, project_name=project_name,
                         overwrite=overwrite, **kwargs)
        if is_distributed_worker():
            use_chief_client(self, timeout_s=self.chief_timeout)
            announced = self.oracle.get_space().values.get(CHILD_CONFIG_HP)
            project.check_worker_config(None if announced is None else json.loads(announced),
                                        self._announced_config())
        else:
            project.check_child_config(self.project_dir, self.child_config(), overwrite)
            self.oracle.child_config = self._announced_config()
        self.search_log = SearchLog(self.project_dir, self.space, self.oracle.objective.direction,
                                    write_files=self.write_reports, print_lines=self.verbose > 0)
        if not is_distributed_worker():
            self.oracle.trial_listeners.append(self.search_log.trial_ended)

    def _get_tuner_fname(self):
        """One tuner file for the chief and a single process: they run the same search, so either resumes the
        other's project (Keras Tuner names it after the tuner id, and would silently start over instead)."""
        if is_distributed_worker():
            return super()._get_tuner_fname()
        return os.path.join(str(self.project_dir), "search_tuner.json")

    # ------------------------------------------------------------ settings
    epochs = property(lambda self: self.trainer.epochs, doc="E, training epochs per child.")
    num_cells = property(lambda self: self.trainer.num_cells, doc="N, normal cells per stack.")
    filters = property(lambda self: self.trainer.filters, doc="F, filters of the first stack.")
    learning_rate = property(lambda self: self.trainer.learning_rate, doc="Initial learning rate.")

    def child_config(self) -> Dict[str, Any]:
        """The child-training settings that make rewards comparable (saved in the project)."""
        d = self.data
        config = {"dataset": d.name, "input_shape": list(d.input_shape), "num_classes": d.num_classes,
                  "num_train": d.num_train, "num_val": d.num_val, "batch_size": d.batch_size}
        config.update({k: v for k, v in self._trainer_kwargs.items() if k not in ("verbose", "max_model_size")})
        return config

    def _announced_config(self) -> Dict[str, Any]:
        return dict(self.child_config(), space=self.space.to_dict())

    # ------------------------------------------------------------ children
    def genotype_of(self, trial) -> gt.Genotype:
        """The `Genotype` of a trial (a `Trial` or `HyperParameters`)."""
        hp = trial.hyperparameters if hasattr(trial, "hyperparameters") else trial
        return space_lib.genotype_from_hyperparameters(hp, self.space)

    def build_child(self, genotype: gt.Genotype) -> keras.Model:
        """The (uncompiled) child network for `genotype` (`ChildTrainer.build`).

        Subclasses may override it (children then train in this process); it
        is called inside the distribution strategy's scope.
        """
        return ChildTrainer.build(self.trainer, genotype)

    def _trial_seed(self, trial_id: str) -> Optional[int]:
        if self.seed is None:
            return None
        digits = "".join(ch for ch in str(trial_id) if ch.isdigit()) or "0"
        return (self.seed * 1_000_003 + int(digits)) % (2 ** 31 - 1)

    def _train_child(self, trial, genotype, seed, keep_best, heartbeat) -> Dict[str, Any]:
        started = []

        def on_progress(phase, step):
            heartbeat.beat()
            if not started and is_distributed_worker() and self.verbose:
                started.append(phase)
                pid = os.getpid() if self._child is None else self._child.pid
                print(f"{self.tuner_id}: trial {trial.trial_id} (attempt {trial_attempt(trial)}) training in "
                      f"process {pid}", flush=True)

        if self.isolation == "none":
            return self.trainer.train(genotype, seed=seed, keep_best=keep_best, on_progress=on_progress,
                                      callbacks=copy.deepcopy(self._callbacks))
        if self._child is None:
            self._child = ChildProcess({"data": self._data_kwargs, "trainer": self._trainer_kwargs,
                                        "distribution": self._distribution_name}, self.trials_per_worker,
                                       os.path.join(self.project_dir, f"worker_{self.tuner_id}.log"),
                                       trial_timeout=self.trial_timeout)
        return self._child.train({"genotype": genotype.to_dict(), "seed": seed, "keep_best": keep_best},
                                 on_progress=on_progress)

    def run_trial(self, trial, *args, **kwargs):
        """Trains and scores the trial's child; returns its metrics (tagged with the attempt).

        Returns:
            ``{"val_accuracy", "val_loss", "accuracy", "loss", "params",
            "mult_adds", "seconds"}`` (the objective's name is the reward).

        Raises:
            ChildTrainingFailed: the loss became NaN / inf or the child is
                oversized (FAILED at once).
            ChildHungError, ChildCrashedError: the child process hung or died
                (INVALID: re-run up to ``max_retries_per_trial`` times).
        """
        genotype = self.genotype_of(trial)
        keep_best = (project.keep_best_request(self.project_dir, self.oracle.objective)
                     if self.keep_best_model and not is_distributed_worker() else None)
        start = time.perf_counter()
        try:
            with TrialHeartbeat(self.oracle, trial, min_interval_s=self._heartbeat_s) as heartbeat:
                metrics = self._train_child(trial, genotype, self._trial_seed(trial.trial_id), keep_best, heartbeat)
        except Exception as err:
            self._failures[trial.trial_id] = {
                "reason": f"{type(err).__name__}: {err}".splitlines()[0],
                "record": dict(getattr(err, "record", {}) or {}, seconds=time.perf_counter() - start)}
            raise
        if metrics.pop("kept", False):
            project.record_kept(self.project_dir, trial.trial_id, metrics[keep_best["objective"]],
                                keep_best["objective"])
        return with_attempt(trial, metrics)

    def on_trial_end(self, trial):
        report = self._failures.pop(trial.trial_id, None)
        if report is not None and trial.status in (trial_module.TrialStatus.FAILED,
                                                   trial_module.TrialStatus.INVALID):
            attach_report(trial, report)  # the reason reaches the chief (Keras Tuner's wire drops messages)
        if is_distributed_worker() and self.verbose:
            reason = f": {report['reason']}" if report else ""
            print(f"{self.tuner_id}: trial {trial.trial_id} (attempt {trial_attempt(trial)}) {trial.status}{reason}",
                  flush=True)
        super().on_trial_end(trial)

    child_pid = property(lambda self: None if self._child is None else self._child.pid,
                         doc="Process id of the running child-training process, or ``None``.")
    child_starts = property(lambda self: 0 if self._child is None else self._child.starts,
                            doc="How many child-training processes this tuner has started.")

    # ------------------------------------------------------------ best model only
    def save_model(self, trial_id, model, step=0):
        """Not used: only the best child's weights are kept (see `keep_best_model`)."""

    def load_model(self, trial):
        """The trained child of `trial` -- only for the best trial, whose weights are kept.

        Raises:
            ValueError: the trial's weights were not kept.
        """
        saved = project.kept_trial_id(self.project_dir)
        if saved != trial.trial_id:
            raise ValueError(
                f"The weights of trial {trial.trial_id} were not kept: only the best child's weights are "
                f"saved (keep_best_model=True; kept: trial {saved}). Rebuild it with "
                "tuner.build_child(tuner.genotype_of(trial)) and train it instead.")
        return self.trainer.build_compiled(self.genotype_of(trial), os.path.join(self.project_dir, project.BEST_WEIGHTS_FILE))

    # ------------------------------------------------------------ search loop and reports
    def search(self, callbacks: Sequence[keras.callbacks.Callback] = (), verbose: Optional[int] = None,
               abandon: Optional[Callable[[], bool]] = None):
        """Runs child trials until the oracle stops (``max_trials`` reached, or too many failures).

        Args:
            callbacks: extra Keras callbacks for every child's `fit` (needs
                ``isolation="none"``).
            verbose: overrides the constructor's ``verbose`` for this call.
            abandon: chief only: stop serving when this returns True (e.g.
                `LocalWorkers.all_exited`), raising `WorkersGoneError`.

        Raises:
            TooManyFailedTrialsError: ``max_consecutive_failed_trials``
                children failed in a row (on the chief and every worker);
                reports are written first.
        """
        if verbose is not None:
            if verbose not in (0, 1, 2):
                raise ValueError(f"verbose must be 0, 1 or 2; got {verbose!r}.")
            self.verbose = int(verbose)
        if callbacks and self.isolation == "process":
            raise ValueError("Extra Keras callbacks need isolation='none' (the child process cannot receive them).")
        self._callbacks = list(callbacks)
        # Keras Tuner's own failure tracebacks stay off (the progress line gives the reason; trial.message
        # keeps the traceback) unless verbose=2.
        try:
            with keras_tuner_debug(self.verbose >= 2):
                self._search_trials(abandon)
        except RuntimeError:  # a single process: the oracle raised Keras Tuner's failure limit (see below)
            if getattr(self.oracle, "stop_reason", None) is None:
                raise
        finally:
            if self._child is not None:
                self._child.close()
            self.search_log.close()
        reason = getattr(self.oracle, "stop_reason", None)
        if reason is not None:
            where = "" if is_distributed_worker() else f" Reports are in {self.project_dir}."
            raise TooManyFailedTrialsError(
                f"The search stopped: {reason}.{where} Fix the cause (learning rate, data, model size) and re-run "
                "with --overwrite (or overwrite=True), or raise max_consecutive_failed_trials.", reason)

    def _search_trials(self, abandon):
        if not is_distributed_worker():
            self.search_log.printer.enabled = self.verbose > 0
            self.search_log.start(self.oracle)
        if serves_workers():
            self.oracle.verbose = 0  # Keras Tuner's own per-trial table stays off: the progress line replaces it
            self.save()
            serve_oracle(self.oracle, abandon=abandon)  # Keras Tuner's servicer; exits within 1 s of the end
        else:
            super().search(verbose=0)

    def reports(self):
        """Rewrites the project's reports from the oracle (a full rebuild) and returns the ended `TrialRecord`s."""
        records = reports.collect_records(self.oracle, self.space, ended_only=True)
        if self.write_reports:
            ReportWriter(self.project_dir, self.oracle.objective.direction).start(records)  # start draws the plot
        return records

    def best_genotype(self) -> Optional[gt.Genotype]:
        """The genotype of the best COMPLETED trial, or ``None`` when none completed."""
        best = [t for t in self.oracle.get_best_trials(1) if t.status == trial_module.TrialStatus.COMPLETED]
        return self.genotype_of(best[0]) if best else None
