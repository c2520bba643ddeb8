"""The paper's RNN controller, trained with PPO (paper Sec. 3 and Appendix A).

`PPOController` samples a sequence of discrete decisions autoregressively with
a one-layer LSTM: at step ``t`` the LSTM reads the embedding of decision
``t - 1`` (a learned start vector at ``t = 0``), and decision ``t``'s own
softmax head turns the hidden state into logits over its choices. Every
decision has its own head and its own embedding table, sized by its number of
choices. All weights start uniform in ``[-init_range, init_range]``.

Training (paper Appendix A): reward = child validation accuracy
minus an exponential moving average baseline (decay 0.95); the policy is
updated with PPO's clipped surrogate on minibatches of 20 architectures, Adam,
learning rate 0.00035, entropy bonus 1e-5 (`adam_beta1`, `logit_tanh`: ENAS' variant).

Implementation: sampling runs in numpy (float64) on a cached copy of the
weights -- about 50 small matrix products, 1-2 ms per architecture on
one CPU core. The update is a compiled `tf.function` over the whole batch
(teacher-forced LSTM, clipped surrogate, hand-written Adam on `tf.Variable`s).

Determinism: given `seed`, the weights' initialisation and the sample
sequence are fixed. `get_state()` returns plain JSON data (weights, Adam
moments and step, baseline, pending batch, numpy RNG state); a controller
restored with `set_state` continues the exact same sequence.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from nasnet_keras.search.checks import check_positive, check_probability, check_seed

# Paper settings (Appendix A). The PPO clip (0.2) and epochs are
# not given by the paper; 0.2 is PPO's usual value.
PAPER_DEFAULTS = dict(units=100, learning_rate=3.5e-4, entropy_weight=1e-5, baseline_decay=0.95,
                      batch_size=20, init_range=0.1)

_WEIGHT_NAMES = ("start", "lstm_kernel", "lstm_bias", "head_kernel", "head_bias", "embedding")
_ADAM_BETA2, _ADAM_EPSILON = 0.999, 1e-8
#: Options newer than the state format: configs saved before them lack the keys, meaning these defaults.
LATER_OPTIONS = dict(adam_beta1=0.9, logit_tanh=None)
_NEG = -1e9  # logit given to padding classes


class PPOController:
    """LSTM controller over a fixed sequence of categorical decisions, trained by PPO.

    Args:
        num_choices: number of classes of each decision, in sampling order
            (e.g. `nasnet_keras.search.space.num_choices(space)`, 50 entries
            for the paper's space). Every entry must be >= 1.
        units: LSTM hidden units (paper: 100).
        embedding_dim: size of the decision embeddings fed back as the next
            step's input; default `units`.
        learning_rate: Adam learning rate (paper: 0.00035).
        entropy_weight: weight of the entropy bonus in the loss (paper: 1e-5).
        baseline_decay: decay of the reward moving average (paper: 0.95).
        batch_size: rewards per PPO update (paper: 20 architectures).
        ppo_clip: epsilon of the clipped ratio (default 0.2).
        ppo_epochs: Adam steps taken on each batch (default 4); the first
            step is the plain policy gradient, later ones are clipped.
        init_range: weights start uniform in [-init_range, init_range] (paper: 0.1).
        adam_beta1: Adam's first-moment decay, in [0, 1) (default 0.9; ENAS: 0).
        logit_tanh: None, or one float ``c_t > 0`` per decision: decision
            t's logits become ``c_t * tanh(logits)`` before the softmax, which
            bounds its probabilities (ENAS, Pham et al. 2018: 1.10 for input
            decisions, 1.10 / 2.5 for op decisions).
        seed: int seed for the initial weights and the sampling RNG; `None`
            draws one from the OS (then saved in the state).

    Shapes of the weights (``T`` decisions, ``C = max(num_choices)``, ``U``
    units, ``E`` embedding_dim): ``start [E]``, ``lstm_kernel [E+U, 4U]``
    (gates i, f, g, o), ``lstm_bias [4U]``, ``head_kernel [T, U, C]``,
    ``head_bias [T, C]``, ``embedding [T, C, E]``; classes beyond a
    decision's own count are padding, masked out of every softmax.
    """

    def __init__(self, num_choices: Sequence[int], units: int = PAPER_DEFAULTS["units"],
                 embedding_dim: Optional[int] = None, learning_rate: float = PAPER_DEFAULTS["learning_rate"],
                 entropy_weight: float = PAPER_DEFAULTS["entropy_weight"],
                 baseline_decay: float = PAPER_DEFAULTS["baseline_decay"],
                 batch_size: int = PAPER_DEFAULTS["batch_size"], ppo_clip: float = 0.2, ppo_epochs: int = 4,
                 init_range: float = PAPER_DEFAULTS["init_range"], adam_beta1: float = 0.9,
                 logit_tanh: Optional[Sequence[float]] = None, seed: Optional[int] = None):
        if isinstance(num_choices, (str, bytes)) or not hasattr(num_choices, "__len__") or not num_choices:
            raise ValueError(f"num_choices must be a non-empty list of ints; got {num_choices!r}.")
        self.num_choices = tuple(check_positive(f"num_choices[{i}]", n) for i, n in enumerate(num_choices))
        self.units = check_positive("units", units)
        self.embedding_dim = check_positive("embedding_dim", embedding_dim) if embedding_dim is not None \
            else self.units
        self.learning_rate = check_positive("learning_rate", learning_rate, float)
        self.entropy_weight = check_positive("entropy_weight", entropy_weight, float, allow_zero=True)
        self.baseline_decay = check_probability("baseline_decay", baseline_decay, allow_zero=True, allow_one=False)
        self.batch_size = check_positive("batch_size", batch_size)
        self.ppo_clip = check_positive("ppo_clip", ppo_clip, float)
        self.ppo_epochs = check_positive("ppo_epochs", ppo_epochs)
        self.init_range = check_positive("init_range", init_range, float)
        self.adam_beta1 = check_probability("adam_beta1", adam_beta1, allow_zero=True, allow_one=False)
        if logit_tanh is not None and (not isinstance(logit_tanh, (list, tuple, np.ndarray))
                                       or len(logit_tanh) != len(self.num_choices)):
            raise ValueError(f"logit_tanh must be None or a list of {len(self.num_choices)} positive floats (one "
                             f"per decision); got {logit_tanh!r}.")
        self.logit_tanh: Optional[Tuple[float, ...]] = None if logit_tanh is None else tuple(
            check_positive(f"logit_tanh[{i}]", c, float) for i, c in enumerate(logit_tanh))
        seed = check_seed("seed", seed)
        self.seed = int(np.random.SeedSequence().entropy % (2 ** 31)) if seed is None else seed

        T, C = len(self.num_choices), max(self.num_choices)
        self._mask = np.zeros((T, C), np.float32)
        for t, n in enumerate(self.num_choices):
            self._mask[t, n:] = _NEG
        init_rng, sample_seed = np.random.SeedSequence(self.seed).spawn(2)
        init = np.random.default_rng(init_rng)
        E, U, r = self.embedding_dim, self.units, self.init_range
        shapes = {"start": (E,), "lstm_kernel": (E + U, 4 * U), "lstm_bias": (4 * U,),
                  "head_kernel": (T, U, C), "head_bias": (T, C), "embedding": (T, C, E)}
        self._vars = {k: tf.Variable(init.uniform(-r, r, shapes[k]).astype(np.float32), name=k)
                      for k in _WEIGHT_NAMES}
        self._m = {k: tf.Variable(tf.zeros(shapes[k]), name=k + "_m") for k in _WEIGHT_NAMES}
        self._v = {k: tf.Variable(tf.zeros(shapes[k]), name=k + "_v") for k in _WEIGHT_NAMES}
        self._adam_step = tf.Variable(0, dtype=tf.int64, name="adam_step")
        self._lr = tf.Variable(self.learning_rate, dtype=tf.float32, name="learning_rate")
        self._rng = np.random.default_rng(sample_seed)
        self.baseline: Optional[float] = None
        self.num_updates = 0
        self.num_rewards = 0
        # Pending batch: (decisions, old log-prob, reward, advantage).
        self._batch: List[Tuple[List[int], float, float, float]] = []
        self.last_update_stats: Dict[str, float] = {}
        self._refresh_numpy()
        self._train_step = tf.function(self._train_step_impl, reduce_retracing=True)

    # ---------------------------------------------------------------- sampling
    @property
    def num_decisions(self) -> int:
        return len(self.num_choices)

    def _refresh_numpy(self):
        self._np = {k: v.numpy().astype(np.float64) for k, v in self._vars.items()}

    def _lstm_np(self, x, h, c):
        w = self._np
        z = np.concatenate([x, h]) @ w["lstm_kernel"] + w["lstm_bias"]
        U = self.units
        i, f, g, o = z[:U], z[U:2 * U], z[2 * U:3 * U], z[3 * U:]
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        return h, c

    def _step_log_probs(self, t, h):
        n = self.num_choices[t]
        logits = h @ self._np["head_kernel"][t, :, :n] + self._np["head_bias"][t, :n]
        if self.logit_tanh is not None:
            logits = self.logit_tanh[t] * np.tanh(logits)
        logits = logits - logits.max()
        return logits - math.log(np.exp(logits).sum())

    def sample(self) -> Tuple[List[int], float]:
        """Samples one sequence of decisions.

        Returns:
            ``(decisions, log_prob)``: the class index of every decision and
            the sequence's total log-probability under the current policy
            (keep it: PPO needs it as the old log-prob).
        """
        w = self._np
        h, c, x, out, total = np.zeros(self.units), np.zeros(self.units), w["start"], [], 0.0
        for t in range(self.num_decisions):
            h, c = self._lstm_np(x, h, c)
            logp = self._step_log_probs(t, h)
            cdf = np.cumsum(np.exp(logp))
            a = int(min(np.searchsorted(cdf, self._rng.random() * cdf[-1], side="right"), len(cdf) - 1))
            out.append(a)
            total += float(logp[a])
            x = w["embedding"][t, a]
        return out, total

    def log_prob(self, decisions: Sequence[int]) -> float:
        """Log-probability of a full decision sequence under the current policy (numpy)."""
        decisions = self._check_decisions(decisions)
        w = self._np
        h, c, x, total = np.zeros(self.units), np.zeros(self.units), w["start"], 0.0
        for t, a in enumerate(decisions):
            h, c = self._lstm_np(x, h, c)
            total += float(self._step_log_probs(t, h)[a])
            x = w["embedding"][t, a]
        return total

    def _check_decisions(self, decisions) -> List[int]:
        decisions = [int(a) for a in decisions]
        if len(decisions) != self.num_decisions:
            raise ValueError(f"Expected {self.num_decisions} decisions; got {len(decisions)}.")
        for t, a in enumerate(decisions):
            if not 0 <= a < self.num_choices[t]:
                raise ValueError(f"Decision {t} = {a} is out of range 0..{self.num_choices[t] - 1}.")
        return decisions

    # ---------------------------------------------------------------- training
    def _sequence_log_prob_tf(self, actions):
        """Teacher-forced log-prob and entropy of each sequence.

        Args:
            actions: int32 [K, T], the sampled class indices.

        Returns:
            ``(log_prob [K], entropy [K])``, both summed over the T decisions.
        """
        v = self._vars
        T = self.num_decisions
        K = tf.shape(actions)[0]
        # [T, K]; unstack / stack rather than an integer Transpose, for which TF's oneDNN rewrite logs an
        # error line ("oneDNN supports DT_INT32 only on platforms with AVX-512") into the search's output.
        acts = tf.stack(tf.unstack(actions, num=T, axis=1))
        # Step t reads the embedding of decision t-1 (the start vector at t = 0).
        steps = tf.tile(tf.range(T - 1)[:, None], [1, K])
        fed = tf.gather_nd(v["embedding"], tf.stack([steps, acts[:-1]], axis=-1))  # [T-1, K, E]
        start = tf.tile(v["start"][None, None, :], [1, K, 1])
        inputs = tf.concat([start, fed], axis=0)  # [T, K, E]

        def lstm_step(carry, x):
            h, c = carry
            z = tf.matmul(tf.concat([x, h], axis=1), v["lstm_kernel"]) + v["lstm_bias"]
            i, f, g, o = tf.split(z, 4, axis=1)
            c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
            return tf.sigmoid(o) * tf.tanh(c), c

        zeros = tf.zeros([K, self.units])
        hs, _ = tf.scan(lstm_step, inputs, initializer=(zeros, zeros))  # [T, K, U]
        mask = tf.constant(self._mask)[:, None, :]
        logits = tf.einsum("tku,tuc->tkc", hs, v["head_kernel"]) + v["head_bias"][:, None, :]
        if self.logit_tanh is not None:
            logits = tf.constant(self.logit_tanh, tf.float32)[:, None, None] * tf.tanh(logits)
        logits = logits + mask
        logp = tf.nn.log_softmax(logits)  # [T, K, C]
        chosen = tf.gather(logp, acts, axis=2, batch_dims=2)  # [T, K]
        plogp = tf.where(mask < 0, 0.0, tf.exp(logp) * logp)
        return tf.reduce_sum(chosen, axis=0), -tf.reduce_sum(plogp, axis=[0, 2])

    def _train_step_impl(self, actions, old_logp, advantages):
        with tf.GradientTape() as tape:
            logp, ent = self._sequence_log_prob_tf(actions)
            ratio = tf.exp(logp - old_logp)
            clipped = tf.clip_by_value(ratio, 1.0 - self.ppo_clip, 1.0 + self.ppo_clip)
            surrogate = tf.minimum(ratio * advantages, clipped * advantages)
            loss = -tf.reduce_mean(surrogate) - self.entropy_weight * tf.reduce_mean(ent)
        grads = tape.gradient(loss, [self._vars[k] for k in _WEIGHT_NAMES])
        self._adam_step.assign_add(1)
        step, b1 = tf.cast(self._adam_step, tf.float32), self.adam_beta1
        lr = self._lr * tf.sqrt(1.0 - _ADAM_BETA2 ** step) / (1.0 - b1 ** step)
        for k, g in zip(_WEIGHT_NAMES, grads):
            m = self._m[k].assign(b1 * self._m[k] + (1.0 - b1) * g)
            s = self._v[k].assign(_ADAM_BETA2 * self._v[k] + (1.0 - _ADAM_BETA2) * tf.square(g))
            self._vars[k].assign_sub(lr * m / (tf.sqrt(s) + _ADAM_EPSILON))
        clip_frac = tf.reduce_mean(tf.cast(tf.abs(ratio - 1.0) > self.ppo_clip, tf.float32))
        return loss, tf.reduce_mean(ent), tf.reduce_mean(ratio), clip_frac

    def add_reward(self, decisions: Sequence[int], old_log_prob: float, reward: float) -> Optional[Dict[str, float]]:
        """Adds one finished sample to the pending batch; updates when the batch is full.

        The advantage is ``reward - baseline`` with the baseline as it stood
        before this reward (the first reward sets the baseline, advantage 0);
        then ``baseline = decay * baseline + (1 - decay) * reward``.

        Args:
            decisions: the sampled class indices.
            old_log_prob: the log-prob `sample()` returned with them.
            reward: the reward (higher is better), a finite number.

        Returns:
            The update's statistics (dict) if this reward completed a batch, else None.
        """
        decisions = self._check_decisions(decisions)
        reward = float(reward)
        if not math.isfinite(reward):
            raise ValueError(f"reward must be finite; got {reward!r}.")
        if self.baseline is None:
            self.baseline = reward
        advantage = reward - self.baseline
        self.baseline = self.baseline_decay * self.baseline + (1.0 - self.baseline_decay) * reward
        self._batch.append((decisions, float(old_log_prob), reward, advantage))
        self.num_rewards += 1
        if len(self._batch) >= self.batch_size:
            return self.update()
        return None

    def update(self) -> Dict[str, float]:
        """Runs `ppo_epochs` Adam steps of PPO on the pending batch and empties it.

        Returns:
            ``{"loss", "entropy", "mean_ratio", "clip_fraction", "mean_reward",
            "baseline", "batch"}`` of the last epoch (empty dict if no batch).
        """
        if not self._batch:
            return {}
        actions = tf.constant([b[0] for b in self._batch], tf.int32)
        old_logp = tf.constant([b[1] for b in self._batch], tf.float32)
        adv = tf.constant([b[3] for b in self._batch], tf.float32)
        for _ in range(self.ppo_epochs):
            loss, ent, ratio, clip_frac = self._train_step(actions, old_logp, adv)
        stats = {"loss": float(loss), "entropy": float(ent), "mean_ratio": float(ratio),
                 "clip_fraction": float(clip_frac), "mean_reward": float(np.mean([b[2] for b in self._batch])),
                 "baseline": float(self.baseline), "batch": len(self._batch)}
        self._batch = []
        self.num_updates += 1
        self._refresh_numpy()
        self.last_update_stats = stats
        return stats

    @property
    def pending(self) -> int:
        """Number of rewards waiting in the current batch."""
        return len(self._batch)

    # ---------------------------------------------------------------- state
    def config(self) -> Dict[str, Any]:
        """The constructor arguments (JSON-ready), minus `seed`."""
        return {"num_choices": list(self.num_choices), "units": self.units, "embedding_dim": self.embedding_dim,
                "learning_rate": self.learning_rate, "entropy_weight": self.entropy_weight,
                "baseline_decay": self.baseline_decay, "batch_size": self.batch_size, "ppo_clip": self.ppo_clip,
                "ppo_epochs": self.ppo_epochs, "init_range": self.init_range, "adam_beta1": self.adam_beta1,
                "logit_tanh": None if self.logit_tanh is None else list(self.logit_tanh)}

    def get_weights(self) -> Dict[str, np.ndarray]:
        """Weights and Adam moments as float32 arrays (``name``, ``name/m``, ``name/v``) plus ``adam_step``."""
        out = {k: v.numpy() for k, v in self._vars.items()}
        out.update({k + "/m": v.numpy() for k, v in self._m.items()})
        out.update({k + "/v": v.numpy() for k, v in self._v.items()})
        out["adam_step"] = np.array(int(self._adam_step.numpy()), np.int64)
        return out

    def set_weights(self, weights: Dict[str, Any]) -> None:
        """Inverse of `get_weights` (arrays or nested lists)."""
        expected = set(self.get_weights())
        missing = expected - set(weights)
        if missing:
            raise ValueError(f"Controller weights are missing {sorted(missing)}.")
        for table, suffix in ((self._vars, ""), (self._m, "/m"), (self._v, "/v")):
            for k, var in table.items():
                value = np.asarray(weights[k + suffix], np.float32)
                if value.shape != tuple(var.shape):
                    raise ValueError(f"Controller weight '{k + suffix}' has shape {value.shape}; this controller "
                                     f"needs {tuple(var.shape)} (different units/space?).")
                var.assign(value)
        self._adam_step.assign(int(np.asarray(weights["adam_step"])))
        self._refresh_numpy()

    def get_state(self, include_weights: bool = True) -> Dict[str, Any]:
        """The full state as JSON-ready data.

        Args:
            include_weights: include weights and Adam moments (as nested
                lists, ~3 x 150k floats for the paper's space). Pass False
                and save `get_weights()` yourself for a compact state.

        Returns:
            ``{"config", "seed", "rng", "baseline", "num_updates", "num_rewards",
            "batch", ["weights"]}``.
        """
        state = {"config": self.config(), "seed": self.seed, "rng": _jsonable(self._rng.bit_generator.state),
                 "baseline": self.baseline, "num_updates": self.num_updates, "num_rewards": self.num_rewards,
                 "batch": [[list(d), lp, r, a] for d, lp, r, a in self._batch]}
        if include_weights:
            state["weights"] = {k: v.tolist() for k, v in self.get_weights().items()}
        return state

    def set_state(self, state: Dict[str, Any]) -> None:
        """Restores `get_state()` output; the sample sequence then continues exactly.

        Only the structure must match: options (`learning_rate`, `adam_beta1`, ...) stay this controller's,
        so states saved before `LATER_OPTIONS` existed restore too.

        Raises:
            ValueError: the saved controller has a different structure
                (`num_choices`, `units`, `embedding_dim`).
        """
        saved = state["config"]
        for key in ("num_choices", "units", "embedding_dim"):
            mine = self.config()[key]
            if saved[key] != mine:
                raise ValueError(f"Saved controller has {key}={saved[key]!r}, this one {mine!r}; "
                                 "build the controller with the saved settings to restore it.")
        self.seed = int(state["seed"])
        self._rng.bit_generator.state = state["rng"]
        self.baseline = None if state["baseline"] is None else float(state["baseline"])
        self.num_updates = int(state["num_updates"])
        self.num_rewards = int(state["num_rewards"])
        self._batch = [([int(a) for a in d], float(lp), float(r), float(a)) for d, lp, r, a in state["batch"]]
        if "weights" in state:
            self.set_weights(state["weights"])


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj
