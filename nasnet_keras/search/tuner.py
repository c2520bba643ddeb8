"""`CellSearchTuner`: trains one child network per trial of a cell search.

Each trial's cell decisions (sampled by an oracle such as `NASNetRLOracle` or
`RandomCellOracle`) are decoded into a `Genotype`, built with the package's one
builder `nasnet_keras.NASNet` (CIFAR stem, N cells per stack), trained and
scored on the held-out reward set (paper Sec. 4, facts Sec. 5) by a
`ChildTrainer`:

* optimizer: SGD with momentum 0.9 and a single-period cosine learning-rate
  decay over all training steps (`keras.optimizers.schedules.CosineDecay`);
* L2 weight decay: every convolution / depthwise / pointwise / dense kernel
  gets a `keras.regularizers.L2(weight_decay / 2)` penalty, i.e. the loss
  gains ``weight_decay / 2 * sum(w ** 2)`` and the gradient ``weight_decay *
  w`` -- TF-slim's ``l2_regularizer(weight_decay)`` convention (its CIFAR
  setup uses 5e-4). BatchNorm parameters and biases are not decayed;
* augmentation: pad / random crop (/ flip), done by `search.data.load_dataset`;
* reward (the objective): accuracy on the reward set after the last epoch,
  reported as ``val_accuracy``.

Every trial also records ``params`` and ``mult_adds`` (`nasnet_keras.model_cost`,
batch 1) and ``seconds`` (build + train + evaluate). A child whose training or
validation loss becomes NaN / inf is marked FAILED with the reason
(`keras_tuner.errors.FailedTrialError`) and the search goes on; when Keras
Tuner's ``max_consecutive_failed_trials`` trials fail in a row the search
stops with `TooManyFailedTrialsError`.

Memory. Every trial starts from `keras.backend.clear_session()` and drops its
model, but TensorFlow (2.16 - 2.21 at least) still keeps each traced
training graph alive: a process that trains many different models grows by
tens of MB per model (keras-team/keras#17458). So by default
(``isolation="process"``) children are trained in a worker subprocess that
loads the dataset once and is replaced after ``trials_per_worker`` trials;
the search process itself stays flat. ``isolation="none"`` trains in this
process (needed for a `SearchData` object, a custom `build_child` or a
`tf.distribute.Strategy` instance) and is fine for short searches.

Disk: no per-trial checkpoints; only the weights of the best child so far are
kept (``best_model.weights.h5``, ``keep_best_model=True``), so
`get_best_models(1)` works. After each trial the project directory's reports
are refreshed (``trials.csv``, ``best_genotype.json``, ``rewards.png``; see
`nasnet_keras.search.progress`).
"""

from __future__ import annotations

import contextlib
import copy
import gc
import json
import math
import os
import subprocess
import sys
import time
import traceback
import warnings
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

import keras
import keras_tuner
import numpy as np
import tensorflow as tf
from keras_tuner.engine import trial as trial_module
from keras_tuner.engine.tuner import maybe_distribute

try:  # Keras Tuner prints each failed trial's traceback when this DEBUG flag is set (its default).
    from keras_tuner.src import config as _kt_config
except ImportError:  # pragma: no cover - other Keras Tuner layouts
    _kt_config = None

from nasnet_keras import genotypes as gt
from nasnet_keras.builder import NASNet
from nasnet_keras.cost import model_cost
from nasnet_keras.search import progress
from nasnet_keras.search import space as space_lib
from nasnet_keras.search.oracles import TrialHeartbeat, with_attempt
from nasnet_keras.search.data import SearchData, load_dataset

__all__ = [
    "CellSearchTuner",
    "ChildTrainer",
    "ChildTrainingFailed",
    "DISTRIBUTIONS",
    "ISOLATIONS",
    "TooManyFailedTrialsError",
    "resolve_distribution_strategy",
]

#: Names accepted by `resolve_distribution_strategy` (and the CLI's --distribution).
DISTRIBUTIONS = ("auto", "mirrored", "default", "one_device")
#: Where children train: a recycled worker subprocess, or this process.
ISOLATIONS = ("process", "none")

CHILD_CONFIG_FILE = "child_config.json"
#: Seconds between a distributed worker's "still alive" calls to the chief (well below worker_timeout).
HEARTBEAT_SECONDS = 30.0
CHILD_RECORD_FILE = "child.json"
BEST_WEIGHTS_FILE = "best_model.weights.h5"
BEST_MODEL_INFO_FILE = "best_model.json"

# Kernel weights that get L2 decay (conv, separable conv parts, dense).
_DECAYED_WEIGHTS = ("kernel", "depthwise_kernel", "pointwise_kernel")


class TooManyFailedTrialsError(RuntimeError):
    """The search stopped because too many child trials failed in a row.

    Raised by `CellSearchTuner.search` in place of Keras Tuner's bare
    ``RuntimeError("Number of consecutive failures exceeded the limit ...")``.

    Attributes:
        limit: the oracle's ``max_consecutive_failed_trials``.
        last_reason: the reason the last trial failed (one line).
    """

    def __init__(self, message: str, limit: int, last_reason: str):
        super().__init__(message)
        self.limit = limit
        self.last_reason = last_reason


class ChildTrainingFailed(keras_tuner.errors.FailedTrialError):
    """A child could not be trained (its loss became NaN / inf): Keras Tuner marks the trial FAILED.

    Attributes:
        record: what was measured before the failure (``params``, ``mult_adds``).
    """

    def __init__(self, message: str, record: Optional[Dict[str, Any]] = None):
        super().__init__(message)
        self.record = dict(record or {})


def resolve_distribution_strategy(spec: Union[str, tf.distribute.Strategy, None] = "auto"):
    """Turns a strategy name into the strategy each child trains under.

    Args:
        spec: ``"auto"`` (default; `tf.distribute.MirroredStrategy` over all
            GPUs when more than one GPU is visible, else the default
            strategy), ``"mirrored"`` (MirroredStrategy over every visible
            GPU, or the CPU when there is none), ``"default"`` (no strategy:
            TensorFlow's default placement), ``"one_device"``
            (`OneDeviceStrategy` on the first GPU, else the CPU), ``None``
            (same as ``"default"``) or a `tf.distribute.Strategy` instance.

    Returns:
        A `tf.distribute.Strategy`, or ``None`` for the default strategy (what
        `keras_tuner.Tuner` expects for "no strategy").

    Raises:
        ValueError: an unknown name.
    """
    if spec is None or isinstance(spec, tf.distribute.Strategy):
        return spec
    _check_distribution_name(spec)
    gpus = tf.config.list_logical_devices("GPU")
    if spec == "auto":
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else None
    if spec == "mirrored":
        return tf.distribute.MirroredStrategy()
    if spec == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    return None


def _check_distribution_name(spec) -> None:
    if not isinstance(spec, str) or spec not in DISTRIBUTIONS:
        raise ValueError(f"distribution_strategy must be one of {', '.join(DISTRIBUTIONS)}, None or a "
                         f"tf.distribute.Strategy; got {spec!r}.")


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_positive(name: str, value, kind=int, allow_zero: bool = False):
    ok = _is_int(value) if kind is int else (isinstance(value, (int, float, np.number))
                                             and not isinstance(value, bool) and math.isfinite(value))
    if not ok or value < 0 or (value == 0 and not allow_zero):
        what = "an int" if kind is int else "a finite number"
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {what} {bound}; got {value!r}.")


class _NaNGuard(keras.callbacks.Callback):
    """Stops training at the first batch whose loss is NaN or infinite."""

    def __init__(self):
        super().__init__()
        self.epoch = 0
        self.where = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.where = (self.epoch + 1, batch + 1, float(loss))
            self.model.stop_training = True


# ---------------------------------------------------------------------- one child
class ChildTrainer:
    """Builds, trains and scores child networks on one dataset.

    Args:
        data: the `SearchData` to train on (its batch size is the global batch).
        epochs, num_cells, filters, learning_rate, momentum, weight_decay,
        drop_path_keep_prob: see `CellSearchTuner`.
        strategy: a `tf.distribute.Strategy` or ``None`` (default strategy).
        verbose: 2 shows Keras' per-epoch logs, else training is silent.
        builder: ``genotype -> keras.Model``; default `build` (the zoo's `NASNet`).
        max_model_size: children with more trainable parameters fail (as in
            `keras_tuner.Tuner`); ``None``: no limit.
    """

    def __init__(self, data: SearchData, *, epochs: int, num_cells: int, filters: int, learning_rate: float,
                 momentum: float, weight_decay: float, drop_path_keep_prob: float, strategy=None,
                 verbose: int = 0, builder: Optional[Callable[[gt.Genotype], keras.Model]] = None,
                 max_model_size: Optional[int] = None):
        self.data = data
        self.epochs = int(epochs)
        self.num_cells = int(num_cells)
        self.filters = int(filters)
        self.learning_rate = float(learning_rate)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.drop_path_keep_prob = float(drop_path_keep_prob)
        self.strategy = strategy
        self.verbose = int(verbose)
        self.builder = builder or self.build
        self.max_model_size = max_model_size

    def build(self, genotype: gt.Genotype) -> keras.Model:
        """The uncompiled child: `NASNet` with the CIFAR stem, N cells per stack, F filters, softmax output."""
        total_steps = self.epochs * self.data.steps_per_epoch
        return NASNet(genotype, num_cells=self.num_cells, filters=self.filters, stem="cifar",
                      input_shape=self.data.input_shape, classes=self.data.num_classes,
                      drop_path_keep_prob=self.drop_path_keep_prob,
                      total_training_steps=total_steps if self.drop_path_keep_prob < 1.0 else None,
                      name="child")

    def compile(self, model: keras.Model) -> None:
        """Adds L2 decay to the kernels and compiles with SGD + momentum + cosine decay."""
        if self.weight_decay > 0:
            l2 = keras.regularizers.L2(self.weight_decay / 2.0)  # slim convention, see module doc
            for variable in model.trainable_weights:
                if variable.path.split("/")[-1] in _DECAYED_WEIGHTS:
                    variable.regularizer = l2
        schedule = keras.optimizers.schedules.CosineDecay(
            self.learning_rate, decay_steps=self.epochs * self.data.steps_per_epoch)
        model.compile(optimizer=keras.optimizers.SGD(schedule, momentum=self.momentum),
                      loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])

    def build_compiled(self, genotype: gt.Genotype, weights_path: Optional[str] = None) -> keras.Model:
        """`builder(genotype)` under the strategy, optionally loading weights, then `compile`d."""
        with maybe_distribute(self.strategy):
            model = self.builder(genotype)
            if weights_path is not None:
                model.load_weights(weights_path)
            self.compile(model)
        return model

    def train(self, genotype: gt.Genotype, *, seed: Optional[int] = None,
              callbacks: Sequence[keras.callbacks.Callback] = (),
              keep_best: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        """Trains one child from scratch and scores it on the reward set.

        Args:
            genotype: the cells.
            seed: seeds Keras (weights, dropout) first when given.
            callbacks: extra Keras callbacks for `fit`.
            keep_best: ``{"path": weights file, "best": best objective value
                so far or None, "objective": name, "direction": "max"|"min"}``;
                the trained weights are written to ``path`` when this child
                beats ``best``.

        Returns:
            ``{"val_accuracy", "val_loss", "accuracy", "loss", "params",
            "mult_adds", "seconds", "kept"}`` (``kept``: weights were saved).

        Raises:
            ChildTrainingFailed: the training or validation loss became NaN /
                inf, or the child exceeds ``max_model_size``.
        """
        keras.backend.clear_session()
        gc.collect()
        if seed is not None:
            keras.utils.set_random_seed(int(seed))
        start = time.perf_counter()
        record: Dict[str, Any] = {}
        model = None
        try:
            model = self.build_compiled(genotype)
            cost = model_cost(model)
            record.update(params=cost.params, mult_adds=cost.mult_adds)
            if self.max_model_size and cost.trainable_params > self.max_model_size:
                raise ChildTrainingFailed(f"Oversized child: {cost.trainable_params} trainable parameters > "
                                          f"max_model_size={self.max_model_size}; not trained.", record)
            guard = _NaNGuard()
            history = model.fit(self.data.train, epochs=self.epochs, shuffle=False,  # data.train shuffles
                                verbose=2 if self.verbose >= 2 else 0, callbacks=[guard] + list(callbacks))
            if guard.where is not None:
                epoch, batch, value = guard.where
                raise ChildTrainingFailed(
                    f"Child training diverged: the loss became {value} at epoch {epoch}, batch {batch}. "
                    "Try a lower learning rate, or check the data for NaN / inf values.", record)
            val = model.evaluate(self.data.validation, verbose=0, return_dict=True)
            if not math.isfinite(float(val["loss"])):
                raise ChildTrainingFailed(
                    f"Child evaluation gave a non-finite validation loss ({val['loss']}); the trained weights "
                    "are unusable. Try a lower learning rate, or check the data for NaN / inf values.", record)
            metrics = {"val_accuracy": float(val["accuracy"]), "val_loss": float(val["loss"]),
                       "accuracy": float(history.history["accuracy"][-1]),
                       "loss": float(history.history["loss"][-1]),
                       "params": float(cost.params), "mult_adds": float(cost.mult_adds)}
            metrics["kept"] = self._keep_if_best(model, metrics, keep_best)
            metrics["seconds"] = time.perf_counter() - start
            return metrics
        finally:
            del model
            keras.backend.clear_session()
            gc.collect()

    @staticmethod
    def _keep_if_best(model, metrics, keep_best) -> bool:
        if not keep_best:
            return False
        value, best = metrics.get(keep_best["objective"]), keep_best.get("best")
        if value is None:
            return False
        if best is not None and not (value > best if keep_best.get("direction", "max") == "max" else value < best):
            return False
        path = keep_best["path"]
        tmp = os.path.join(os.path.dirname(path), "tmp_" + os.path.basename(path))
        model.save_weights(tmp)
        os.replace(tmp, path)
        return True


# ---------------------------------------------------------------------- worker subprocess
def _worker_main() -> None:
    """Worker loop (run in a subprocess): JSON lines in on stdin, JSON lines out on the original stdout.

    First line: ``{"data": load_dataset kwargs, "trainer": ChildTrainer kwargs,
    "distribution": name}``; then one request per trial
    ``{"genotype", "seed", "keep_best"}``. Anything else the process prints
    goes to stderr (the project's ``worker_<tuner_id>.log``).
    """
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # stray prints (TensorFlow, Keras) go to the log, not the protocol
    sys.stdout = sys.stderr

    def send(message):
        out.write(json.dumps(message) + "\n")
        out.flush()

    try:
        config = json.loads(sys.stdin.readline())
        data = load_dataset(**config["data"])
        trainer = ChildTrainer(data, strategy=resolve_distribution_strategy(config["distribution"]),
                               **config["trainer"])
    except Exception as err:  # noqa: BLE001 - reported to the parent
        send({"status": "error", "reason": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()})
        return
    send({"status": "ready", "pid": os.getpid()})
    for line in sys.stdin:
        request = json.loads(line)
        try:
            metrics = trainer.train(gt.Genotype.from_dict(request["genotype"]), seed=request.get("seed"),
                                    keep_best=request.get("keep_best"))
            send({"status": "ok", "metrics": metrics})
        except ChildTrainingFailed as err:
            send({"status": "failed", "reason": str(err), "record": err.record})
        except Exception as err:  # noqa: BLE001 - reported to the parent
            send({"status": "error", "reason": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()})


class _TrialWorker:
    """A recycled subprocess that trains children (see `_worker_main`)."""

    def __init__(self, config: Dict[str, Any], trials_per_worker: int, log_path: str):
        self.config = config
        self.trials_per_worker = trials_per_worker
        self.log_path = log_path
        self.proc: Optional[subprocess.Popen] = None
        self.trials = 0
        self.starts = 0

    def _start(self) -> None:
        self.close()
        env = dict(os.environ)
        # The worker imports this package from where this process found it.
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(gt.__file__))))
        env["PYTHONPATH"] = os.pathsep.join([package_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                                              if p and p != package_root])
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        log = open(self.log_path, "w")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from nasnet_keras.search.tuner import _worker_main; _worker_main()"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env, text=True, bufsize=1)
        finally:
            log.close()
        self.trials = 0
        self.starts += 1
        self.proc.stdin.write(json.dumps(self.config) + "\n")
        self.proc.stdin.flush()
        reply = self._receive()
        if reply.get("status") != "ready":
            self.close()
            raise RuntimeError(f"The child-training worker could not start: {reply.get('reason')}\n"
                               f"{reply.get('traceback', '')}")

    def _receive(self) -> Dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            self.close()
            raise RuntimeError(f"The child-training worker died (exit code {code}). Last lines of "
                               f"{self.log_path}:\n{self._log_tail()}")
        return json.loads(line)

    def _log_tail(self, lines: int = 15) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def train(self, request: Dict[str, Any]) -> Dict[str, Any]:
        """Runs one trial in the worker; returns the metrics or raises like `ChildTrainer.train`."""
        if self.proc is None or self.proc.poll() is not None or self.trials >= self.trials_per_worker:
            self._start()
        self.trials += 1
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        reply = self._receive()
        if reply["status"] == "ok":
            return reply["metrics"]
        if reply["status"] == "failed":
            raise ChildTrainingFailed(reply["reason"], reply.get("record"))
        raise RuntimeError(f"Child training raised {reply['reason']}\n{reply.get('traceback', '')}")

    @property
    def pid(self) -> Optional[int]:
        return None if self.proc is None else self.proc.pid

    def close(self) -> None:
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            self.proc.stdout.close()
            self.proc = None


def _limit_parent_gpu_memory() -> None:
    """Lets the search process grab GPU memory only as needed, so the worker gets the rest."""
    try:
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:  # TensorFlow already initialised the GPUs in this process
        warnings.warn("TensorFlow was initialised on the GPU before CellSearchTuner(isolation='process'), so "
                      "this process may hold GPU memory the child-training worker needs. Create the tuner "
                      "before running TensorFlow ops, or use isolation='none'.", stacklevel=3)


# ---------------------------------------------------------------------- the tuner
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
        trials_per_worker: trials before the worker is replaced (default 20).
        seed: int; when given each trial seeds Keras (weights init, dropout)
            with a value derived from it and the trial id, so a re-run trial
            starts from the same weights. ``None``: not seeded.
        keep_best_model: save the weights of the best child so far to
            ``<project>/best_model.weights.h5`` (one file, overwritten; not
            in Keras Tuner's distributed chief / worker mode).
        write_reports: refresh ``trials.csv``, ``best_genotype.json`` and
            ``rewards.png`` in the project directory after every trial.
        verbose: 1 prints one progress line per trial, 0 is silent, 2 also
            shows Keras' per-epoch training output (with process isolation
            it goes to the worker's log, ``<project>/worker_<tuner_id>.log``).
        max_model_size: children with more trainable parameters are not
            trained; their trials FAIL (as in `keras_tuner.Tuner`).
        directory, project_name, overwrite, tuner_id: as in
            `keras_tuner.Tuner` (``overwrite=False`` resumes a project).
        **kwargs: other `keras_tuner.Tuner` arguments.

    Attributes:
        data: the `SearchData` (loaded once, in this process).
        trainer: the in-process `ChildTrainer` (also used by `load_model`).

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
        if max_model_size is not None:
            _check_positive("max_model_size", max_model_size)
        for name, value in (("epochs", epochs), ("num_cells", num_cells), ("filters", filters),
                            ("trials_per_worker", trials_per_worker)):
            _check_positive(name, value)
        _check_positive("learning_rate", learning_rate, float)
        _check_positive("weight_decay", weight_decay, float, allow_zero=True)
        if not (isinstance(momentum, (int, float)) and 0.0 <= momentum < 1.0):
            raise ValueError(f"momentum must be in [0, 1); got {momentum!r}.")
        if not (isinstance(drop_path_keep_prob, (int, float)) and 0.0 < drop_path_keep_prob <= 1.0):
            raise ValueError(f"drop_path_keep_prob must be in (0, 1]; got {drop_path_keep_prob!r}.")
        if seed is not None and not _is_int(seed):
            raise ValueError(f"seed must be an int or None; got {seed!r}.")
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2; got {verbose!r}.")
        if data_options is not None and isinstance(data, SearchData):
            raise ValueError("data_options only apply when data is a dataset name or None, not a SearchData.")
        if not (data is None or isinstance(data, (SearchData, str, os.PathLike))):
            raise ValueError(f"data must be a SearchData, a dataset name / directory, or None; "
                             f"got {type(data).__name__}.")
        if distribution_strategy is not None and not isinstance(distribution_strategy, tf.distribute.Strategy):
            _check_distribution_name(distribution_strategy)
        if space is None:
            space = getattr(oracle, "space", None) or space_lib.SearchSpace()
        if not isinstance(space, space_lib.SearchSpace):
            raise ValueError(f"space must be a SearchSpace; got {type(space).__name__}.")

        blockers = []
        if isinstance(data, SearchData):
            blockers.append("data is a SearchData object (pass its name and data_options instead)")
        if type(self).build_child is not CellSearchTuner.build_child:
            blockers.append("build_child is overridden")
        if isinstance(distribution_strategy, tf.distribute.Strategy):
            blockers.append("distribution_strategy is a Strategy instance (pass its name instead)")
        if isolation is None:
            isolation = "none" if blockers else "process"
        if isolation not in ISOLATIONS:
            raise ValueError(f"isolation must be one of {', '.join(ISOLATIONS)} or None; got {isolation!r}.")
        if isolation == "process" and blockers:
            raise ValueError("isolation='process' cannot be used because " + "; ".join(blockers) +
                             ". Use isolation='none'.")
        self.isolation = isolation

        # Load the data first: a bad dataset fails before any project file is touched.
        if isinstance(data, SearchData):
            self.data = data
            self._data_kwargs = None
        else:
            self._data_kwargs = {k: os.fspath(v) if isinstance(v, os.PathLike) else v
                                 for k, v in dict(data_options or {}).items()}
            if data is not None:
                self._data_kwargs["name_or_path"] = os.fspath(data)
            self.data = load_dataset(**self._data_kwargs)
        if isolation == "process":
            _limit_parent_gpu_memory()
            strategy = None  # the worker resolves the name itself
        else:
            strategy = resolve_distribution_strategy(distribution_strategy)
        self._distribution_name = distribution_strategy if isinstance(distribution_strategy, str) else "default"

        self.space = space
        self.seed = None if seed is None else int(seed)
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
        self._worker: Optional[_TrialWorker] = None
        self._child_records: Dict[str, dict] = {}  # trial id -> child.json content (see `reports`)
        self._progress = progress.ProgressPrinter(enabled=self.verbose > 0)

        super().__init__(oracle=oracle, hypermodel=None, distribution_strategy=strategy,
                         max_model_size=max_model_size, directory=directory, project_name=project_name,
                         overwrite=overwrite, **kwargs)
        self._check_child_config(overwrite)

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

    def _check_child_config(self, overwrite: bool) -> None:
        if self._is_worker():
            return
        path = os.path.join(self.project_dir, CHILD_CONFIG_FILE)
        mine = self.child_config()
        if not overwrite and os.path.exists(path):
            with open(path) as f:
                saved = json.load(f)
            diffs = [f"{k}: saved {saved.get(k)!r}, given {mine[k]!r}" for k in mine if saved.get(k) != mine[k]]
            if diffs:
                raise ValueError(
                    f"Cannot resume the project in {self.project_dir}: it was created with a different "
                    f"child-training setup ({'; '.join(diffs)}), so its rewards are not comparable. Nothing "
                    "was deleted. Use the saved settings to resume, overwrite=True (--overwrite) to start "
                    "over, or another project_name (--project_name).")
            return
        with open(path, "w") as f:
            json.dump(mine, f, indent=1)

    # ------------------------------------------------------------ children
    def genotype_of(self, trial) -> gt.Genotype:
        """The `Genotype` of a trial (a `Trial` or `HyperParameters`)."""
        hp = trial.hyperparameters if hasattr(trial, "hyperparameters") else trial
        return space_lib.genotype_from_hyperparameters(hp, self.space)

    def build_child(self, genotype: gt.Genotype) -> keras.Model:
        """The (uncompiled) child network for `genotype`, from `nasnet_keras.NASNet`.

        CIFAR stem, ``num_cells`` cells per stack, ``filters`` filters, input
        shape and classes of the data, softmax output. Subclasses may
        override it (children then train in this process); it is called
        inside the distribution strategy's scope.
        """
        return ChildTrainer.build(self.trainer, genotype)

    def _trial_seed(self, trial_id: str) -> Optional[int]:
        if self.seed is None:
            return None
        digits = "".join(ch for ch in str(trial_id) if ch.isdigit()) or "0"
        return (self.seed * 1_000_003 + int(digits)) % (2 ** 31 - 1)

    def _keep_best_request(self) -> Optional[Dict[str, Any]]:
        if not self.keep_best_model or self._is_worker():
            return None
        objective = self.oracle.objective
        best = None
        info_path = os.path.join(self.project_dir, BEST_MODEL_INFO_FILE)
        if os.path.exists(info_path):
            with open(info_path) as f:
                best = json.load(f).get("value")
        return {"path": os.path.join(self.project_dir, BEST_WEIGHTS_FILE), "best": best,
                "objective": objective.name, "direction": objective.direction}

    def run_trial(self, trial, *args, callbacks: Sequence[keras.callbacks.Callback] = (), **kwargs):
        """Trains and scores the trial's child (in the worker or in this process); returns its metrics.

        Returns:
            ``{"val_accuracy", "val_loss", "accuracy", "loss", "params",
            "mult_adds", "seconds"}`` (the objective's name is the reward).

        Raises:
            ChildTrainingFailed: the loss became NaN or inf (the trial is
                marked FAILED with this message).
        """
        genotype = self.genotype_of(trial)
        keep_best = self._keep_best_request()
        seed = self._trial_seed(trial.trial_id)
        start = time.perf_counter()
        record: Dict[str, Any] = {"trial_id": trial.trial_id}
        # On a distributed worker, tell the chief the trial is alive while the child trains, so it is
        # re-queued only if this worker really dies (see the oracles' worker_timeout).
        alive = (TrialHeartbeat(self.oracle, trial, interval_s=HEARTBEAT_SECONDS) if self._is_worker()
                 else contextlib.nullcontext())
        try:
            if self.isolation == "process":
                if callbacks:
                    raise ValueError("Extra Keras callbacks need isolation='none' (the worker process cannot "
                                     "receive them).")
                if self._worker is None:
                    self._worker = _TrialWorker(self._worker_config(), self.trials_per_worker,
                                                os.path.join(self.project_dir, f"worker_{self.tuner_id}.log"))
                with alive:
                    metrics = self._worker.train({"genotype": genotype.to_dict(), "seed": seed,
                                                  "keep_best": keep_best})
            else:
                with alive:
                    metrics = self.trainer.train(genotype, seed=seed, keep_best=keep_best,
                                                 callbacks=copy.deepcopy(list(callbacks)))
        except Exception as err:
            record.update(getattr(err, "record", {}) or {})
            record.update(seconds=time.perf_counter() - start, status="FAILED",
                          reason=f"{type(err).__name__}: {err}")
            self._write_child_record(trial.trial_id, record)
            raise
        kept = metrics.pop("kept", False)
        if kept:
            with open(os.path.join(self.project_dir, BEST_MODEL_INFO_FILE), "w") as f:
                json.dump({"trial_id": trial.trial_id, "value": metrics[keep_best["objective"]],
                           "objective": keep_best["objective"]}, f)
        record.update(params=metrics["params"], mult_adds=metrics["mult_adds"], seconds=metrics["seconds"],
                      status="COMPLETED")
        self._write_child_record(trial.trial_id, record)
        return with_attempt(trial, metrics) if self._is_worker() else metrics

    def _worker_config(self) -> Dict[str, Any]:
        return {"data": self._data_kwargs, "trainer": self._trainer_kwargs, "distribution": self._distribution_name}

    @property
    def worker_pid(self) -> Optional[int]:
        """Process id of the running child-training worker, or ``None``."""
        return None if self._worker is None else self._worker.pid

    @property
    def worker_starts(self) -> int:
        """How many worker processes this tuner has started."""
        return 0 if self._worker is None else self._worker.starts

    def _write_child_record(self, trial_id: str, record: Dict[str, Any]) -> None:
        if self._is_worker():
            return
        path = os.path.join(self.get_trial_dir(trial_id), CHILD_RECORD_FILE)
        with open(path, "w") as f:
            json.dump(record, f)
        self._child_records.pop(trial_id, None)  # a re-run trial: read the new file

    # ------------------------------------------------------------ best model only
    def save_model(self, trial_id, model, step=0):
        """Not used: only the best child's weights are kept (see `keep_best_model`)."""

    def load_model(self, trial):
        """The trained child of `trial` -- only for the best trial, whose weights are kept.

        Raises:
            ValueError: the trial's weights were not kept (only the best
                child's are, with ``keep_best_model=True``).
        """
        info_path = os.path.join(self.project_dir, BEST_MODEL_INFO_FILE)
        saved = None
        if os.path.exists(info_path):
            with open(info_path) as f:
                saved = json.load(f).get("trial_id")
        if saved != trial.trial_id:
            raise ValueError(
                f"The weights of trial {trial.trial_id} were not kept: only the best child's weights are "
                f"saved (keep_best_model=True; kept: trial {saved}). Rebuild it with "
                "tuner.build_child(tuner.genotype_of(trial)) and train it instead.")
        return self.trainer.build_compiled(self.genotype_of(trial),
                                           os.path.join(self.project_dir, BEST_WEIGHTS_FILE))

    # ------------------------------------------------------------ search loop
    def search(self, callbacks: Sequence[keras.callbacks.Callback] = (), verbose: Optional[int] = None):
        """Runs child trials until the oracle stops (``max_trials`` reached).

        Args:
            callbacks: extra Keras callbacks for every child's `fit`
                (deep-copied per trial; needs ``isolation="none"``).
            verbose: overrides the constructor's ``verbose`` for this call.

        Raises:
            TooManyFailedTrialsError: ``max_consecutive_failed_trials``
                children failed in a row; reports are written first.
        """
        if verbose is not None:
            if verbose not in (0, 1, 2):
                raise ValueError(f"verbose must be 0, 1 or 2; got {verbose!r}.")
            self.verbose = int(verbose)
            self._progress.enabled = self.verbose > 0
        if callbacks and self.isolation == "process":
            raise ValueError("Extra Keras callbacks need isolation='none' (the worker process cannot receive them).")
        debug = _kt_config.DEBUG if _kt_config is not None else None
        try:
            # Keras Tuner's own per-trial display (a 50-row table) stays off, and so do the
            # tracebacks it prints for failed trials (the progress line gives the reason;
            # trial.message keeps the traceback) unless verbose=2.
            if _kt_config is not None:
                _kt_config.DEBUG = self.verbose >= 2
            super().search(callbacks=list(callbacks), verbose=0)
        finally:
            if _kt_config is not None:
                _kt_config.DEBUG = debug
            if self._worker is not None:
                self._worker.close()

    def on_search_begin(self):
        super().on_search_begin()
        self._progress.start(max_trials=self.oracle.max_trials,
                             done=len(getattr(self.oracle, "end_order", []) or []))

    def on_trial_end(self, trial):
        try:
            super().on_trial_end(trial)
        except RuntimeError as err:
            if "consecutive failures" not in str(err):
                raise
            self._after_trial(trial)
            limit = self.oracle.max_consecutive_failed_trials
            reason = progress.failure_reason(trial.message)
            raise TooManyFailedTrialsError(
                f"The search stopped: the last {limit} child trials all failed (Keras Tuner's "
                f"max_consecutive_failed_trials={limit}). Last failure, trial {trial.trial_id}: {reason} "
                f"Reports are in {self.project_dir}. Fix the cause (learning rate, data, model size) and "
                "re-run with --overwrite (or overwrite=True), or raise max_consecutive_failed_trials.",
                limit, reason) from None
        self._after_trial(trial)

    def _after_trial(self, trial) -> None:
        if self._is_worker():
            return
        records = self.reports()
        self._progress.trial_end(trial.trial_id, records, self.oracle.objective.direction)

    def on_search_end(self):
        super().on_search_end()
        if not self._is_worker():
            self.reports()

    def reports(self):
        """Writes the project's reports (if ``write_reports``) and returns its `TrialRecord`s."""
        records = progress.collect_records(self.oracle, self.space, self.project_dir, self._child_records)
        if self.write_reports:
            progress.write_reports(records, self.project_dir, self.oracle.objective.direction)
        return records

    def best_genotype(self) -> Optional[gt.Genotype]:
        """The genotype of the best COMPLETED trial, or ``None`` when none completed."""
        best = [t for t in self.oracle.get_best_trials(1) if t.status == trial_module.TrialStatus.COMPLETED]
        return self.genotype_of(best[0]) if best else None
