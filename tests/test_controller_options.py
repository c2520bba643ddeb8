"""Tests of the PPO controller's ENAS options: `adam_beta1` and `logit_tanh` (nasnet_keras.search.controller)."""

import itertools
import json
import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from nasnet_keras.search.controller import LATER_OPTIONS, PPOController  # noqa: E402

COUNTS = [2, 3, 13, 13, 2, 4, 5, 13, 13, 2]  # mixed input / op / combine decisions


def test_logit_tanh_numpy_and_tf_log_probs_agree():
    scales = [1.1 if n != 13 else 1.1 / 2.5 for n in COUNTS]
    ctl = PPOController(COUNTS, units=16, logit_tanh=scales, seed=3)
    w = ctl.get_weights()
    w["head_kernel"] = w["head_kernel"] * 30.0  # logits well past tanh's linear range
    ctl.set_weights(w)
    samples = [ctl.sample() for _ in range(6)]
    logp, _ = ctl._sequence_log_prob_tf(tf.constant([s[0] for s in samples], tf.int32))
    numpy_logp = [ctl.log_prob(s[0]) for s in samples]
    np.testing.assert_allclose(numpy_logp, [s[1] for s in samples], atol=1e-9)
    np.testing.assert_allclose(logp.numpy(), numpy_logp, atol=1e-5)
    plain = PPOController(COUNTS, units=16, seed=3)
    plain.set_weights(w)
    assert abs(plain.log_prob(samples[0][0]) - numpy_logp[0]) > 1e-3  # the option changes the policy


def _conditional_probs(ctl, T):
    """p(a_t | a_<t) for every prefix of every sequence of T two-choice decisions, by enumeration."""
    joint = {seq: np.exp(ctl.log_prob(seq)) for seq in itertools.product((0, 1), repeat=T)}
    marginal = {(): 1.0}
    for t in range(1, T + 1):
        for prefix in itertools.product((0, 1), repeat=t):
            marginal[prefix] = sum(p for seq, p in joint.items() if seq[:t] == prefix)
    return [marginal[p] / marginal[p[:-1]] for p in marginal if p]


def test_logit_tanh_bounds_every_decision_probability():
    T = 3
    bound = 1.0 / (1.0 + np.exp(-2 * 0.5))  # sigmoid(2 * 0.5): logits confined to [-0.5, 0.5]
    squashed = PPOController([2] * T, units=8, logit_tanh=[0.5] * T, seed=0)
    plain = PPOController([2] * T, units=8, seed=0)
    w = squashed.get_weights()
    w["head_kernel"] = w["head_kernel"] * 100.0
    w["head_bias"] = np.tile(np.array([[20.0, -20.0]], np.float32), (T, 1))
    for ctl in (squashed, plain):
        ctl.set_weights(w)
    probs = _conditional_probs(squashed, T)
    assert sum(probs) == pytest.approx(len(probs) / 2)  # each pair of siblings sums to 1
    assert max(probs) <= bound + 1e-6 and max(probs) > bound - 0.05
    assert max(_conditional_probs(plain, T)) > 0.999  # without squashing the same weights are near-deterministic


def _one_adam_step(beta1):
    ctl = PPOController([2, 3, 4], units=8, batch_size=4, ppo_epochs=1, adam_beta1=beta1, seed=7)
    for i in range(4):
        decisions, logp = ctl.sample()
        ctl.add_reward(decisions, logp, float(i))  # varied rewards: non-zero advantages
    assert ctl.num_updates == 1
    w = ctl.get_weights()
    assert int(w["adam_step"]) == 1
    return w


@pytest.mark.parametrize("beta1", [0.0, 0.9])
def test_adam_beta1_sets_the_first_moment(beta1):
    w = _one_adam_step(beta1)
    for name in ("lstm_bias", "head_kernel"):
        m, v = w[name + "/m"].astype(np.float64), w[name + "/v"].astype(np.float64)
        g = m / (1.0 - beta1)  # m = beta1 * 0 + (1 - beta1) * g
        assert np.abs(g).max() > 1e-6
        np.testing.assert_allclose(g ** 2 * (1.0 - 0.999), v, rtol=1e-5, atol=1e-30)


def test_options_in_config_and_state_round_trip():
    ctl = PPOController([2, 3], units=8, adam_beta1=0.0, logit_tanh=[1.1, 0.44], seed=1)
    cfg = ctl.config()
    assert cfg["adam_beta1"] == 0.0 and cfg["logit_tanh"] == [1.1, 0.44]
    state = json.loads(json.dumps(ctl.get_state()))
    rebuilt = PPOController(**state["config"], seed=state["seed"])
    rebuilt.set_state(state)
    assert rebuilt.config() == cfg
    assert [rebuilt.sample() for _ in range(3)] == [ctl.sample() for _ in range(3)]
    assert PPOController([2, 3], units=8).config()["logit_tanh"] is None


def test_state_saved_before_the_options_restores():
    ctl = PPOController([2, 3], units=8, seed=1)
    state = json.loads(json.dumps(ctl.get_state()))
    for key in LATER_OPTIONS:
        del state["config"][key]
    other = PPOController([2, 3], units=8, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        other.set_state(state)
    assert [other.sample() for _ in range(3)] == [ctl.sample() for _ in range(3)]
    assert {k: ctl.config()[k] for k in LATER_OPTIONS} == LATER_OPTIONS


@pytest.mark.parametrize("kwargs, match", [
    (dict(adam_beta1=1.0), r"adam_beta1 must be in \[0, 1\)"),
    (dict(adam_beta1=-0.1), "adam_beta1"),
    (dict(adam_beta1="0.9"), "adam_beta1"),
    (dict(logit_tanh=[1.1]), "logit_tanh must be None or a list of 2"),
    (dict(logit_tanh=1.1), "logit_tanh"),
    (dict(logit_tanh="ab"), "logit_tanh"),
    (dict(logit_tanh=[1.1, 0.0]), r"logit_tanh\[1\]"),
    (dict(logit_tanh=[1.1, float("nan")]), r"logit_tanh\[1\]"),
])
def test_bad_option_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PPOController([2, 3], units=8, **kwargs)


def test_rl_project_saved_before_the_options_resumes_without_warning(tmp_path):
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _oracle_search as harness
    from nasnet_keras.search import space as sp
    from nasnet_keras.search.oracles import NASNetRLOracle

    small = sp.SearchSpace(num_blocks=1, ops=("identity", "max_pool_3x3"), combines=("add",))
    harness.ScoreTuner(NASNetRLOracle(max_trials=3, seed=1, space=small), directory=str(tmp_path),
                       project_name="rl").search(verbose=0)
    path = tmp_path / "rl" / "oracle.json"
    state = json.loads(path.read_text())
    config = state["nasnet_cell_search"]["controller"]["config"]
    for key in LATER_OPTIONS:
        del config[key]  # as written before the options existed
    path.write_text(json.dumps(state))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        tuner = harness.ScoreTuner(NASNetRLOracle(max_trials=3, seed=1, space=small), directory=str(tmp_path),
                                   project_name="rl")
    assert tuner.oracle.controller.num_rewards == 3
