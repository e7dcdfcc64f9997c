#!/usr/bin/env python3
"""Self-test of the numpy reference (benches/reference/coevo_numpy.py) against docs/model.md section 3.

Run with `python3 -m pytest benches/reference` or plain `python3 benches/reference/test_coevo_numpy.py`
(from an interpreter that has numpy, e.g. target/bench-venv/bin/python).

Statistical tolerances.  Every statistical check compares an ensemble mean over R independent replicates
with its exact expectation and allows Z_TOL = 4 standard errors, the standard error being the sample
standard deviation of the replicate values divided by sqrt(R).  For a correct implementation the
estimate is asymptotically normal, so one check fails with probability 2*(1 - Phi(4)) = 6.3e-5; the
seeds are fixed, so the outcome is deterministic anyway, and the effects the checks guard against
(prior ignored in the posterior, unbiased divisor, allocation mistakes) are many standard errors wide
at these replicate counts (noted per test).
"""

import json
import math
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import coevo_numpy as cn  # noqa: E402

Z_TOL = 4.0
P0 = np.array([0.05, 0.10, 0.20, 0.25, 0.40])  # non-uniform: symmetry alone cannot give the right mean


def _mean_and_se(samples):
    """Ensemble mean along axis 0 and its standard error, sample std (ddof=1) / sqrt(R)."""
    samples = np.asarray(samples, dtype=float)
    r = samples.shape[0]
    return samples.mean(axis=0), samples.std(axis=0, ddof=1) / math.sqrt(r)


def test_martingale_mean_p():
    """E[p_t] = p^0 for full rounds at T = 1 (text phase is a martingale; image phase leaves p alone).

    R = 1000 replicates, t = 5 rounds, N = 50, overlapping conditionals (s2 = 0.5).  Each of the K
    components of the ensemble mean must lie within Z_TOL standard errors (std over replicates of
    p_t,i / sqrt(R)) of p^0_i.  A posterior that used a uniform prior instead of p would pull the mean
    of p towards 1/K by many standard errors here."""
    R, t, N = 1000, 5, 50
    rng = np.random.default_rng(12345)
    finals = []
    for _ in range(R):
        st = cn.initial_state(5, 2, s2=0.5, p0=P0)
        for _ in range(t):
            cn.run_round(rng, st, N)
        finals.append(st.p.copy())
    finals = np.array(finals)
    assert np.allclose(finals.sum(axis=1), 1.0, atol=1e-12)
    mean, se = _mean_and_se(finals)
    assert np.all(se > 0)
    z = np.abs(mean - P0) / se
    assert np.all(z < Z_TOL), f"mean p {mean} vs p0 {P0}, z = {z}"


def _contraction_ratios(initial, step, rng, K, d, n, t, R):
    """tr Sigma_t / tr Sigma_0 of the K texts of R runs of t rounds, fixed(n), frozen text."""
    ratios = []
    for _ in range(R):
        st = initial(K, d, s2=0.1)
        tr0 = cn.traces(st.Sigma)
        for _ in range(t):
            step(rng, st, N=1000, fixed=n, freeze_text=True)
        ratios.extend(cn.traces(st.Sigma) / tr0)
        assert np.array_equal(st.p, np.full(K, 1.0 / K))  # frozen text model
    return ratios


def test_trace_contraction_fixed_allocation():
    """fixed(n), MLE, frozen text: E tr Sigma_t = ((n-1)/n)^t tr Sigma_0.

    With the text model frozen and a fixed allocation, the K texts evolve independently, so the K * R
    values tr Sigma_t / tr Sigma_0 are independent replicates.  n = 5, t = 4: expectation 0.8^4 = 0.4096;
    tolerance Z_TOL standard errors (std of the ratio over the K * R replicates / sqrt(K * R)).  The
    unbiased divisor (expectation 1) or a divisor off by one would be dozens of standard errors away."""
    K, d, n, t, R = 5, 2, 5, 4, 500
    ratios = _contraction_ratios(cn.initial_state, cn.run_round, np.random.default_rng(777), K, d, n, t, R)
    mean, se = _mean_and_se(ratios)
    expected = ((n - 1) / n) ** t
    assert abs(mean - expected) < Z_TOL * se, f"mean ratio {mean} vs {expected} (se {se})"


def test_diagonal_variant():
    """--structure diagonal: the expanded-form posterior equals the full one on diagonal covariances,
    and fixed(n), MLE, frozen text contracts E tr Sigma_t = ((n-1)/n)^t tr Sigma_0 (docs/model.md
    section 14), same tolerance rule as test_trace_contraction_fixed_allocation (K * R independent
    ratios, Z_TOL standard errors)."""
    rng = np.random.default_rng(11)
    K, d, N = 6, 5, 2000
    var = rng.uniform(0.05, 0.5, (K, d))
    mu = rng.standard_normal((K, d))
    p = rng.dirichlet(np.ones(K))
    y = rng.standard_normal((N, d))
    L, _ = cn.factorize(np.stack([np.diag(v) for v in var]))
    assert np.allclose(cn.posterior_diagonal(y, p, mu, var), cn._posterior_mahalanobis(y, p, mu, L), rtol=1e-9, atol=1e-9)
    K, d, n, t, R = 5, 3, 5, 4, 400
    ratios = _contraction_ratios(cn.initial_state_diagonal, cn.run_round_diagonal, rng, K, d, n, t, R)
    mean, se = _mean_and_se(ratios)
    expected = ((n - 1) / n) ** t
    assert abs(mean - expected) < Z_TOL * se, f"mean ratio {mean} vs {expected} (se {se})"


def test_wright_fisher_limit():
    """Non-overlapping conditionals (Sigma -> 0): Z is one-hot, the text phase is Wright-Fisher
    resampling and E[H_t] = (1 - 1/N)^t H_0.

    s2 = 1e-8 (means ~1.2 apart, ~12000 standard deviations), image model frozen, N = 20, t = 3 rounds,
    R = 4000 replicates; tolerance Z_TOL standard errors of the mean of H_t (std over replicates /
    sqrt(R)).  The gap to the upper end H_0 is ~ 0.1, about 30 standard errors."""
    N, t, R = 20, 3, 4000
    rng = np.random.default_rng(2024)
    h0 = cn.gini_simpson(P0)
    hs = []
    for _ in range(R):
        st = cn.initial_state(5, 2, s2=1e-8, p0=P0)
        for _ in range(t):
            cn.run_round(rng, st, N, freeze_image=True)
        hs.append(cn.gini_simpson(st.p))
    mean, se = _mean_and_se(hs)
    expected = (1.0 - 1.0 / N) ** t * h0
    assert abs(mean - expected) < Z_TOL * se, f"E H_t {mean} vs {expected} (se {se})"


def test_gini_simpson_bounds_overlapping():
    """General case: (1 - 1/N) H(p) <= E[H(p') | p] <= H(p), each side with Z_TOL standard errors of
    slack (std of H(p') over R = 4000 one-step replicates / sqrt(R)).  s2 = 0.5: strongly overlapping."""
    N, R = 20, 4000
    rng = np.random.default_rng(99)
    h0 = cn.gini_simpson(P0)
    hs = []
    for _ in range(R):
        st = cn.initial_state(5, 2, s2=0.5, p0=P0)
        cn.run_round(rng, st, N, freeze_image=True)
        hs.append(cn.gini_simpson(st.p))
    mean, se = _mean_and_se(hs)
    assert mean >= (1.0 - 1.0 / N) * h0 - Z_TOL * se, (mean, (1.0 - 1.0 / N) * h0, se)
    assert mean <= h0 + Z_TOL * se, (mean, h0, se)


def test_identical_conditionals_keep_p():
    """All conditionals identical: Z(y) = p for every image, so p' = p exactly (up to rounding)."""
    rng = np.random.default_rng(5)
    st = cn.State(P0, np.zeros((5, 3)), np.broadcast_to(np.eye(3), (5, 3, 3)))
    L, _ = cn.factorize(st.Sigma)
    for post in cn.POSTERIORS:
        st.p = P0.copy()
        cn.text_phase(rng, st, L, 500, posterior=post)
        assert np.allclose(st.p, P0, rtol=0, atol=1e-12), (post, st.p)


def test_posterior_variants_agree():
    rng = np.random.default_rng(3)
    K, d, N = 7, 4, 3000
    A = rng.standard_normal((K, d, d))
    Sigma = A @ A.transpose(0, 2, 1) / d + 0.05 * np.eye(d)
    mu = rng.standard_normal((K, d))
    p = rng.dirichlet(np.ones(K))
    p[2] = 0.0  # a dead text must get no posterior mass
    p /= p.sum()
    L, _ = cn.factorize(Sigma)
    y = rng.standard_normal((N, d)) * 1.5
    a = cn._posterior_mahalanobis(y, p, mu, L)
    b = cn._posterior_quadratic(y, p, mu, L)
    assert a[2] == 0.0 and b[2] == 0.0
    assert np.allclose(a, b, rtol=1e-9, atol=1e-9)
    # Brute force: direct densities, one image at a time.
    Sinv = np.linalg.inv(Sigma)
    _, logdet = np.linalg.slogdet(Sigma)
    ref = np.zeros(K)
    for yy in y[:200]:
        diff = yy - mu
        ll = -0.5 * np.einsum("ki,kij,kj->k", diff, Sinv, diff) - 0.5 * logdet - 0.5 * d * math.log(2 * math.pi)
        w = p * np.exp(ll - ll.max())
        ref += w / w.sum()
    assert np.allclose(cn._posterior_mahalanobis(y[:200], p, mu, L), ref, rtol=1e-9, atol=1e-12)


def test_segment_moments_both_paths():
    """MLE moments (divisor n_i) equal numpy's, on the reduceat path and on the per-text GEMM path."""
    rng = np.random.default_rng(8)
    K, d = 6, 3
    counts = np.array([0, 1, 2, 5, 40, 0])
    offsets = np.concatenate(([0], np.cumsum(counts)))
    y = rng.standard_normal((counts.sum(), d))
    saved = cn.OUTER_BUDGET
    try:
        for budget in (1 << 30, 0):
            cn.OUTER_BUDGET = budget
            mean, cov = cn.segment_moments(y, offsets, counts)
            for i in range(K):
                seg = y[offsets[i]:offsets[i + 1]]
                if counts[i] >= 2:
                    assert np.allclose(mean[i], seg.mean(axis=0))
                    assert np.allclose(cov[i], np.cov(seg.T, bias=True))
    finally:
        cn.OUTER_BUDGET = saved


def test_singular_covariance_jitter_counted_and_small_texts_unchanged():
    rng = np.random.default_rng(11)
    st = cn.initial_state(5, 2, s2=0.1, p0=[0.5, 0.5, 0.0, 0.0, 0.0])
    st.Sigma[3] = np.diag([1.0, 0.0])  # singular (and its text is dead: it is never sampled)
    before = st.Sigma.copy(), st.mu.copy()
    n_reg = cn.run_round(rng, st, 200)
    assert n_reg == 1 and st.regularized == 1
    # texts 2..4 draw no pairs (n_i = 0 < 2): unchanged, including the exact singular Sigma.
    assert np.array_equal(st.Sigma[2:], before[0][2:]) and np.array_equal(st.mu[2:], before[1][2:])
    assert not np.array_equal(st.Sigma[:2], before[0][:2])
    assert np.array_equal(st.p[2:], np.zeros(3))


def test_cli_bench_and_check():
    script = os.path.join(HERE, "coevo_numpy.py")
    out = subprocess.run([sys.executable, script, "--K", "5", "--d", "2", "--N", "200", "--rounds", "3",
                          "--seed", "1", "--threads", "1"], check=True, capture_output=True, text=True).stdout
    rec = json.loads(out)
    assert set(rec) == {"K", "d", "N", "rounds", "seconds", "rounds_per_second"}
    assert rec["rounds"] == 3 and rec["rounds_per_second"] > 0
    out = subprocess.run([sys.executable, script, "--check", "--rounds", "4", "--fixed", "10", "--freeze-text"],
                         check=True, capture_output=True, text=True).stdout
    rec = json.loads(out)
    assert rec["gini_simpson"] == rec["gini_simpson_0"]
    assert math.isclose(rec["expected_mean_trace"], 0.9 ** 4 * rec["mean_trace_0"])


if __name__ == "__main__":
    tests = [(k, v) for k, v in sorted(globals().items()) if k.startswith("test_") and callable(v)]
    passed = failed = 0
    for name, fn in tests:
        try:
            fn()
            passed += 1
            print(f"ok   {name}")
        except Exception as exc:  # noqa: BLE001 - report every failure, keep going
            failed += 1
            print(f"FAIL {name}: {type(exc).__name__}: {exc}")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
