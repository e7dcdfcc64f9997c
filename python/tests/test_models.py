"""Models written in Python (`models=`): a numpy Gaussian model reproduces the built-in model's
statistics (SPEC 3's contraction), runs are reproducible, and a model's exceptions and wrong
outputs are reported like a plugin's errors (entity, call, round, the exception's last line)."""

import math

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import coevo

# docs/model.md section 3, the isolation experiment: a frozen text model of K = 5 texts and a
# conditional model refitted by maximum likelihood on exactly n of each text's own samples, so
# E tr Sigma_t = ((n-1)/n)^t tr Sigma_0 for every text independently.
K, N, VARIANCE, DIM = 5, 50, 0.1, 2
TRACE0 = DIM * VARIANCE


def scenario(model: str, rounds: int = 20, replicates: int = 12, seed: int = 5) -> str:
    return f"""Scenario(
    name: "python_model",
    seed: {seed},
    rounds: {rounds},
    replicates: {replicates},
    entities: [
        TextModel(name: "captioner", initial: Uniform({K}), frozen: true),
        {model},
    ],
)"""


HOSTED = f'PluginModel(name: "painter", model: "gauss", conditioned_on: "captioner", allocation: Fixed({N}), params: {{"variance": {VARIANCE}, "dim": {DIM}}})'
BUILTIN = f'ImageModel(name: "painter", conditioned_on: "captioner", dim: {DIM}, covariance: Isotropic({VARIANCE}), allocation: Fixed({N}), estimator: Mle)'


class Gaussian(coevo.Model):
    """Per-text Gaussians in numpy, as the built-in image model: the paper's unit-circle means,
    an isotropic initial covariance, a maximum-likelihood refit (divisor n)."""

    diversity_metric = "trace"

    def __init__(self, num_texts, params):
        super().__init__(num_texts, params)
        self.dim = int(params["dim"])
        angles = 2 * np.pi * np.arange(1, num_texts + 1) / num_texts
        self.mean0 = np.zeros((num_texts, self.dim))
        self.mean0[:, 0], self.mean0[:, 1] = np.cos(angles), np.sin(angles)
        self.cov0 = np.tile(np.eye(self.dim) * float(params["variance"]), (num_texts, 1, 1))
        self.mean, self.cov = self.mean0.copy(), self.cov0.copy()

    @staticmethod
    def _draw(mean, cov, counts, scale, rng):
        # Dispersion scaled by the temperature, as the built-in model's covariance is.
        return np.concatenate([rng.multivariate_normal(mean[i], cov[i] * scale, size=c) for i, c in enumerate(counts)])

    def sample(self, counts, temperature, rng):
        return self._draw(self.mean, self.cov, counts, temperature, rng)

    def sample_initial(self, counts, rng):
        return self._draw(self.mean0, self.cov0, counts, 1.0, rng)

    def log_likelihood(self, samples):
        out = np.empty((samples.shape[0], self.num_texts))
        for i in range(self.num_texts):
            diff = samples - self.mean[i]
            _, logdet = np.linalg.slogdet(self.cov[i])
            maha = np.einsum("nd,nd->n", diff, np.linalg.solve(self.cov[i], diff.T).T)
            out[:, i] = -0.5 * (maha + logdet + self.dim * math.log(2 * math.pi))
        return out

    def fit(self, counts, samples):
        start = 0
        for i, c in enumerate(counts):
            rows = samples[start : start + c]
            start += c
            if c >= 2:  # fewer samples leave the text's conditional as it is
                self.mean[i] = rows.mean(axis=0)
                self.cov[i] = np.cov(rows.T, bias=True)

    def metrics(self):
        return {"trace": np.trace(self.cov, axis1=1, axis2=2)}


def traces(result, rounds):
    """Per round, the final traces of every text of every replicate."""
    m = result.metrics.filter((pl.col("model") == "painter") & (pl.col("metric") == "trace"))
    return {t: m.filter(pl.col("round") == t)["value"].to_numpy() for t in rounds}


def mean_se(x):
    return float(np.mean(x)), float(np.std(x, ddof=1) / math.sqrt(len(x)))


# The suite's tolerance (tests/common/mod.rs): 4.5 standard errors, so that even with every
# comparison of the suite a correct model fails by chance with a negligible probability.
Z = 4.5


def test_python_gaussian_reproduces_the_contraction_of_the_builtin_model(at_root):
    rounds = (10, 20)
    hosted = traces(coevo.run(scenario(HOSTED), models={"gauss": Gaussian}), rounds)
    builtin = traces(coevo.run(scenario(BUILTIN)), rounds)
    for t in rounds:
        # 12 replicates x 5 texts = 60 independent conditionals per round; the tolerance is Z
        # times the sample standard error of their mean (the trace is a product of t
        # independent Wishart ratios, log-variance about 2t/(d(n-1)) <= 0.41 here, so the
        # mean of 60 is close to normal).
        assert len(hosted[t]) == len(builtin[t]) == 60
        expected = ((N - 1) / N) ** t * TRACE0
        mean, se = mean_se(hosted[t])
        assert abs(mean - expected) < Z * se, f"round {t}: Python model mean trace {mean:.5f} +- {se:.5f}, theory {expected:.5f}"
        # And it agrees with the built-in model within the two means' combined standard error.
        b_mean, b_se = mean_se(builtin[t])
        assert abs(mean - b_mean) < Z * math.hypot(se, b_se), f"round {t}: Python {mean:.5f} +- {se:.5f}, built-in {b_mean:.5f} +- {b_se:.5f}"


def test_the_same_seed_gives_the_same_run(at_root):
    first = coevo.run(scenario(HOSTED, rounds=5, replicates=3), models={"gauss": Gaussian})
    second = coevo.run(scenario(HOSTED, rounds=5, replicates=3), models={"gauss": Gaussian}, threads=1)
    assert first.metrics.height > 0
    assert_frame_equal(first.metrics, second.metrics, check_exact=True)
    other = coevo.run(scenario(HOSTED, rounds=5, replicates=3, seed=6), models={"gauss": Gaussian})
    assert not other.metrics.equals(first.metrics), "another seed gives other numbers"


class FailingFit(Gaussian):
    """Raises inside its third refit: round 3's (one refit per round)."""

    fits = 0

    def fit(self, counts, samples):
        self.fits += 1
        if self.fits == 3:
            raise ValueError("the batch is not what this model expected")
        super().fit(counts, samples)


def test_an_exception_in_fit_names_entity_call_round_and_the_exception(at_root):
    with pytest.raises(RuntimeError) as e:
        coevo.run(scenario(HOSTED, rounds=5, replicates=1), models={"gauss": FailingFit})
    message = str(e.value)
    for expected in ["round 3", "model `painter`", "fit:", "ValueError: the batch is not what this model expected", "test_models.py"]:
        assert expected in message, f"must say {expected!r}: {message}"


class WrongShape(Gaussian):
    """Returns one coordinate too many."""

    def sample(self, counts, temperature, rng):
        return np.zeros((int(np.sum(counts)), self.dim + 1))


def test_a_wrong_shaped_array_is_reported_not_crashed_on(at_root):
    with pytest.raises(RuntimeError) as e:
        coevo.run(scenario(HOSTED, rounds=2, replicates=1), models={"gauss": WrongShape})
    message = str(e.value)
    # The first sample is the text phase's (one image per caption of the text model's batch).
    for expected in ["round 1", "model `painter`", "sample:", f", {DIM + 1}); expected (", f", {DIM}): sum(counts) x dim"]:
        assert expected in message, f"must say {expected!r}: {message}"


def test_a_model_not_supplied_is_a_scenario_error(at_root):
    with pytest.raises(coevo.ScenarioError) as e:
        coevo.run(scenario(HOSTED, rounds=2, replicates=1), models={"other": Gaussian})
    message = str(e.value)
    assert "no hosted model `gauss` is supplied (these are: other)" in message, message
    assert e.value.path is not None and e.value.path.endswith(".model"), e.value.path
    with pytest.raises(TypeError, match="not a class or factory"):
        coevo.validate(scenario(HOSTED), models={"gauss": 3})
    # Parameters the model refuses (here: a missing key) are reported at `params`.
    with pytest.raises(coevo.ScenarioError) as e:
        coevo.validate(scenario(HOSTED.replace('"dim": 2', '"dims": 2')), models={"gauss": Gaussian})
    assert "KeyError: 'dim'" in str(e.value) and e.value.path.endswith(".params"), str(e.value)
