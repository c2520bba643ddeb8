"""Which part a process plays in Keras Tuner's distributed (chief / worker) search.

Keras Tuner reads its role from the environment: ``KERASTUNER_TUNER_ID``
(``chief`` serves the oracle; ``tuner0``, ``tuner1``, ... run trials),
``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT``.
"""

from __future__ import annotations

import os

__all__ = ["chief_address", "is_distributed_worker", "serves_workers"]


def serves_workers() -> bool:
    """True in the chief process of a distributed search (it serves the oracle over gRPC)."""
    return bool(os.environ.get("KERASTUNER_ORACLE_IP")) and "chief" in os.environ.get("KERASTUNER_TUNER_ID", "")


def is_distributed_worker() -> bool:
    """True in a worker process of a distributed search (it asks the chief for trials)."""
    tuner_id = os.environ.get("KERASTUNER_TUNER_ID")
    return bool(os.environ.get("KERASTUNER_ORACLE_IP")) and tuner_id is not None and "chief" not in tuner_id


def chief_address() -> str:
    """``ip:port`` of the chief, from Keras Tuner's environment (``"?"`` parts when unset)."""
    return f"{os.environ.get('KERASTUNER_ORACLE_IP', '?')}:{os.environ.get('KERASTUNER_ORACLE_PORT', '?')}"
