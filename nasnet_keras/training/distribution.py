"""Which `tf.distribute` strategy a transfer-training run uses, and who writes its outputs.

``auto``: `MultiWorkerMirroredStrategy` when ``TF_CONFIG`` names a cluster of
more than one task, else `MirroredStrategy` over all local GPUs when there are
several, else TensorFlow's default strategy. The global batch is the
per-replica batch times `num_replicas_in_sync`.

With several workers every worker trains in lock step; only the chief (task
``chief`` 0, or ``worker`` 0 when the cluster has no chief) writes the run's
outputs. The others keep their checkpoints under ``<directory>/workers/`` so
that each can resume after a restart.

The strategy must be made before TensorFlow runs any op (a multi-worker
requirement), hence `make_strategy` is the first thing the CLI does.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Mapping, Optional, Tuple

import tensorflow as tf

__all__ = ["ClusterRole", "DISTRIBUTIONS", "TFConfigError", "make_strategy", "parse_tf_config"]

DISTRIBUTIONS = ("auto", "mirrored", "multi_worker", "default", "one_device")
_EXAMPLE = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}')


class TFConfigError(ValueError):
    """``TF_CONFIG`` is not a valid cluster description (the message says what is wrong)."""


@dataclasses.dataclass(frozen=True)
class ClusterRole:
    """This process's place in a multi-worker cluster."""

    task_type: str
    task_index: int
    num_workers: int            # tasks that train: chief + workers
    cluster_has_chief: bool = False

    @property
    def is_chief(self) -> bool:
        """Writes the outputs: task chief 0, or worker 0 in a cluster without a chief."""
        return self.task_type == "chief" or (self.task_type == "worker" and self.task_index == 0
                                             and not self.cluster_has_chief)

    @property
    def name(self) -> str:
        return f"{self.task_type}_{self.task_index}"


def parse_tf_config(environ: Mapping[str, str] = os.environ) -> Optional[ClusterRole]:
    """This process's role from ``TF_CONFIG``; None when unset or a one-task cluster.

    Raises:
        TFConfigError: not JSON, no ``cluster`` / ``task``, an unknown task
            type, an index out of range, or an address that is not host:port.
    """
    text = environ.get("TF_CONFIG", "").strip()
    if not text:
        return None

    def bad(problem):
        return TFConfigError(f"TF_CONFIG is malformed: {problem}. Expected e.g. {_EXAMPLE} "
                             "(one entry per machine; the same cluster on every machine, its own task on each).")

    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise bad(f"not JSON ({err.msg} at character {err.pos})") from None
    if not isinstance(config, dict):
        raise bad("it must be a JSON object")
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise bad("no 'cluster' object with the task addresses")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise bad("no 'task' object with 'type' and 'index'")
    for kind, addresses in cluster.items():
        if kind not in ("chief", "worker", "evaluator", "ps"):
            raise bad(f"unknown task type {kind!r} in 'cluster' (use 'chief' and 'worker')")
        if not isinstance(addresses, list) or not addresses:
            raise bad(f"cluster[{kind!r}] must be a non-empty list of 'host:port' strings")
        for address in addresses:
            host, _, port = str(address).rpartition(":")
            if not host or not port.isdigit():
                raise bad(f"address {address!r} in cluster[{kind!r}] is not 'host:port'")
    if "ps" in cluster:
        raise bad("parameter servers ('ps') are not supported; train with 'chief'/'worker' tasks only")
    task_type, index = task["type"], task["index"]
    if task_type not in cluster:
        raise bad(f"task type {task_type!r} is not in the cluster ({', '.join(cluster)})")
    if not isinstance(index, int) or not 0 <= index < len(cluster[task_type]):
        raise bad(f"task index {index!r} is out of range for the {len(cluster[task_type])} "
                  f"{task_type!r} task(s)")
    num_workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    if num_workers <= 1:
        return None
    return ClusterRole(task_type, index, num_workers, cluster_has_chief="chief" in cluster)


def make_strategy(kind: str = "auto",
                  environ: Mapping[str, str] = os.environ) -> Tuple[Optional[tf.distribute.Strategy],
                                                                    Optional[ClusterRole]]:
    """The strategy for ``kind`` (see `DISTRIBUTIONS`) and, with several workers, this process's role.

    Returns:
        ``(strategy or None for the default strategy, role or None)``.

    Raises:
        ValueError: an unknown kind, or ``multi_worker`` without a cluster
            in ``TF_CONFIG``.
        TFConfigError: a malformed ``TF_CONFIG``.
    """
    if kind not in DISTRIBUTIONS:
        raise ValueError(f"Unknown distribution {kind!r}; use one of {', '.join(DISTRIBUTIONS)}.")
    role = parse_tf_config(environ)
    if kind == "multi_worker" and role is None:
        raise ValueError("--distribution=multi_worker needs TF_CONFIG naming a cluster of two or more tasks, e.g. "
                         f"TF_CONFIG='{_EXAMPLE}'.")
    if role is not None and kind in ("auto", "multi_worker"):
        gpus = tf.config.list_physical_devices("GPU")
        implementation = (tf.distribute.experimental.CommunicationImplementation.NCCL if gpus
                          else tf.distribute.experimental.CommunicationImplementation.RING)
        options = tf.distribute.experimental.CommunicationOptions(implementation=implementation)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options), role
    gpus = tf.config.list_logical_devices("GPU")
    if kind == "mirrored" or (kind == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy(), None
    if kind == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0"), None
    return None, None
