#!/usr/bin/env python3
"""Vectorised numpy reference for one coevo training round (docs/model.md sections 1-3).

This is the baseline the Rust engine is timed against: the version a competent researcher would write
with numpy, not a straw man. One round = text phase (captioner refit) then image phase (per-text MLE
refit), each on its own fresh batch of N pairs.

State: p (K,), mu (K, d), Sigma (K, d, d).  mu_i^0 = (cos 2 pi i/K, sin 2 pi i/K, 0, ...), i = 1..K,
Sigma^0 = s2 I (s2 = 0.1), p^0 uniform.

Implementation choices (timed single-threaded with numpy 2.4.6 + OpenBLAS; numbers in benches/reference/README.md):

* Batches are drawn as multinomial counts, and captions are laid out sorted by text
  (x = repeat(arange(K), counts)).  The draw is exchangeable, so order does not matter, and every text
  then owns one contiguous segment of the batch: sampling and refits become segment operations.
* Sampling: one batched Cholesky of the (K, d, d) stack per round (shared by both phases: Sigma only
  changes at the end of the image phase), then y = mu_i + eps @ L_i^T on each text's segment.  That is
  one BLAS GEMM per text; the gather-and-einsum alternative (einsum('nij,nj->ni', L[x], eps)) moves
  N*d*d numbers instead of N*d and was 1.2x-5x slower at every scale we support.
* Posterior: log N(y; mu_k, Sigma_k) = -|L_k^{-1}(y - mu_k)|^2 / 2 - sum log diag L_k - d/2 log 2 pi,
  with the inverse Cholesky factors precomputed once per round and evaluated for all K texts on a chunk
  of images by one GEMM: (c, d) @ (d, K*d).  Chunks keep the (c, K, d) intermediate near 2^18 numbers
  (2 MiB), so the large scale (N*K*d = 8e8) runs in tens of MiB.  Log-sum-exp by max shift.
  `--posterior quadratic` is an alternative that expands the quadratic form into features
  (y_a y_b, y, 1) so that one (c, d(d+1)/2+d+1) @ (., K) GEMM gives all log-likelihoods: about 3x faster
  at d >= 8 but it loses absolute accuracy ~ eps |y|^2 / sigma^2 when covariances collapse, so it is not
  the default.
* Image refit: two-pass (mean, then centred scatter) for numerical stability.  Segment means with
  np.add.reduceat over the non-empty segments.  Scatter matrices with np.add.reduceat over the outer
  products when N*d*d is small (paper scale); above OUTER_BUDGET numbers that would materialise an
  N x d x d array (0.8 GB at the large scale), so each text's segment does one GEMM yc^T yc instead
  (a loop over K texts, never over samples; it was also the faster path there, 1 ms vs 2 ms at mid scale).
* Singular covariances: the stored Sigma is always the exact estimator.  When the batched Cholesky
  fails, texts are factorised one by one and a failing one gets a jitter 1e-12 * (tr Sigma / d) * I,
  multiplied by 10 until it factorises; each regularised text is counted (`regularized`).

Diagonal covariances (`--structure diagonal`, docs/model.md section 14; the platform-scale comparison):
  Sigma is stored as (K, d) variances; sampling is y = mu_i + sd_i * eps on each segment; the posterior
  uses the expanded form log N(y; mu_k, diag s_k) = -(1/2)[y^2 . (1/s_k) - 2 y . (mu_k/s_k) + sum mu_k^2/s_k]
  - (1/2) sum log s_k - d/2 log 2 pi, i.e. one (c, 2d) @ (2d, K) GEMM per chunk of images against the
  features (y^2, y): the fastest numpy formulation (its cancellation for collapsed covariances is the same
  caveat as `--posterior quadratic`); the refit is the per-coordinate MLE variance (two-pass, centred).

CLI:
  coevo_numpy.py --K 5 --d 2 --N 1000 --rounds R --seed S [--threads 1] [--structure diagonal]
      one warm-up round, then times R rounds; prints
      {"K":..,"d":..,"N":..,"rounds":..,"seconds":..,"rounds_per_second":..}
  coevo_numpy.py ... --check [--fixed n] [--freeze-text] [--freeze-image]
      runs R rounds from the initial state and prints the final Gini-Simpson diversity and mean trace
      (plus the theory values where the spec gives them exactly).
"""

import argparse
import json
import math
import os
import sys
import time


def _parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--K", type=int, default=5, help="number of texts")
    ap.add_argument("--d", type=int, default=2, help="image dimension")
    ap.add_argument("--N", type=int, default=1000, help="pairs per batch")
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None,
                    help="set OMP/OPENBLAS/MKL thread counts before numpy is imported (1 for the one-core comparison)")
    ap.add_argument("--s2", type=float, default=0.1, help="initial covariance Sigma^0 = s2 I")
    ap.add_argument("--posterior", choices=("mahalanobis", "quadratic"), default="mahalanobis")
    ap.add_argument("--structure", choices=("full", "diagonal"), default="full",
                    help="covariance family: full matrices, or diagonal (per-coordinate variances)")
    ap.add_argument("--check", action="store_true", help="print dynamics summary instead of timing")
    ap.add_argument("--fixed", type=int, default=None, metavar="n",
                    help="fixed(n) allocation in the image phase (default: binomial)")
    ap.add_argument("--freeze-text", action="store_true", help="skip the text phase")
    ap.add_argument("--freeze-image", action="store_true", help="skip the image phase")
    return ap.parse_args(argv)


def _set_threads(n):
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[var] = str(n)


if __name__ == "__main__":
    # BLAS reads its thread count when it is loaded: parse --threads before importing numpy.
    _ARGS = _parse_args()
    if _ARGS.threads is not None:
        _set_threads(_ARGS.threads)

import numpy as np  # noqa: E402

LOG_2PI = math.log(2.0 * math.pi)
# Target size (in float64 numbers) of the (chunk, K, d) posterior intermediate: 2 MiB.
POSTERIOR_BUDGET = 1 << 18
# Above this many numbers, N x d x d outer products are not materialised (per-text GEMMs instead).
OUTER_BUDGET = 1 << 17
JITTER_REL = 1e-12


# --------------------------------------------------------------------------------------------- state
class State:
    """p (K,), mu (K, d), Sigma (K, d, d), plus the initial conditionals and a regularisation counter."""

    def __init__(self, p, mu, Sigma):
        self.p = np.asarray(p, dtype=float).copy()
        self.mu = np.asarray(mu, dtype=float).copy()
        self.Sigma = np.asarray(Sigma, dtype=float).copy()
        self.mu0 = self.mu.copy()
        self.Sigma0 = self.Sigma.copy()
        self.regularized = 0  # texts regularised in the last round
        self.regularized_total = 0

    @property
    def K(self):
        return self.p.shape[0]

    @property
    def d(self):
        return self.mu.shape[1]


def initial_state(K, d, s2=0.1, p0=None):
    """Paper defaults: means on the unit circle (first two coordinates), Sigma^0 = s2 I, p^0 uniform."""
    if d < 2:
        raise ValueError("d must be >= 2 (means live on the unit circle of the first two coordinates)")
    i = np.arange(1, K + 1)
    mu = np.zeros((K, d))
    mu[:, 0] = np.cos(2.0 * np.pi * i / K)
    mu[:, 1] = np.sin(2.0 * np.pi * i / K)
    Sigma = np.broadcast_to(s2 * np.eye(d), (K, d, d)).copy()
    p = np.full(K, 1.0 / K) if p0 is None else np.asarray(p0, dtype=float)
    return State(p, mu, Sigma)


# ----------------------------------------------------------------------------------- factorisation
def factorize(Sigma):
    """Lower Cholesky factors of the (K, d, d) stack; jitter only the texts whose factorisation fails.

    Returns (L, n_regularized)."""
    try:
        return np.linalg.cholesky(Sigma), 0
    except np.linalg.LinAlgError:
        pass
    K, d, _ = Sigma.shape
    L = np.empty_like(Sigma)
    eye = np.eye(d)
    n_reg = 0
    for k in range(K):  # rare path: only when some Sigma_k is (numerically) singular
        try:
            L[k] = np.linalg.cholesky(Sigma[k])
            continue
        except np.linalg.LinAlgError:
            pass
        scale = np.trace(Sigma[k]) / d
        jitter = JITTER_REL * (scale if np.isfinite(scale) and scale > 0 else 1.0)
        while True:
            try:
                L[k] = np.linalg.cholesky(Sigma[k] + jitter * eye)
                break
            except np.linalg.LinAlgError:
                jitter *= 10.0
        n_reg += 1
    return L, n_reg


# ---------------------------------------------------------------------------------------- sampling
def draw_counts(rng, p, N, fixed=None):
    """How many pairs of the batch carry each text: multinomial(N, p), or fixed(n) for every text."""
    if fixed is not None:
        return np.full(p.shape[0], fixed, dtype=np.int64)
    return rng.multinomial(N, p)


def draw_images(rng, counts, mu, L):
    """Images for a batch laid out sorted by text: rows offsets[i]:offsets[i+1] carry text i."""
    K, d = mu.shape
    offsets = np.zeros(K + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    eps = rng.standard_normal((int(offsets[-1]), d))
    y = np.empty_like(eps)
    for i in np.flatnonzero(counts):  # one GEMM per text segment
        s, e = offsets[i], offsets[i + 1]
        np.matmul(eps[s:e], L[i].T, out=y[s:e])
        y[s:e] += mu[i]
    return y, offsets


# ---------------------------------------------------------------------------------------- posterior
def _posterior_mahalanobis(y, p, mu, L):
    """Sum over images of Z(y) (shape (K,)), with log N(y; mu_k, Sigma_k) via inverse Cholesky factors."""
    N, d = y.shape
    K = p.shape[0]
    Linv = np.linalg.inv(L)  # (K, d, d), lower triangular
    with np.errstate(divide="ignore"):
        logp = np.log(p)  # zeros stay zeros: log 0 = -inf gives Z = 0
    const = logp - np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1) - 0.5 * d * LOG_2PI
    W = np.ascontiguousarray(Linv.reshape(K * d, d).T)  # (d, K*d): y @ W = [L_k^{-1} y]_k
    b = np.einsum("kij,kj->ki", Linv, mu).reshape(K * d)
    chunk = max(1, POSTERIOR_BUDGET // (K * d))
    zsum = np.zeros(K)
    for s in range(0, N, chunk):
        z = y[s:s + chunk] @ W
        z -= b
        z = z.reshape(-1, K, d)
        lj = np.einsum("cki,cki->ck", z, z)
        lj *= -0.5
        lj += const  # log p_k + log q(y | k)
        lj -= lj.max(axis=1, keepdims=True)
        np.exp(lj, out=lj)
        lj /= lj.sum(axis=1, keepdims=True)
        zsum += lj.sum(axis=0)
    return zsum


def _posterior_quadratic(y, p, mu, L):
    """Same as _posterior_mahalanobis via features (y_a y_b, y, 1) and one GEMM per chunk.

    Faster for d >= 8 but the expanded quadratic form cancels catastrophically for tiny covariances."""
    N, d = y.shape
    K = p.shape[0]
    Linv = np.linalg.inv(L)
    P = np.einsum("kji,kjl->kil", Linv, Linv)  # precision matrices Sigma_k^{-1}
    Pmu = np.einsum("kij,kj->ki", P, mu)
    iu, ju = np.triu_indices(d)
    nq = iu.shape[0]
    F = nq + d + 1
    with np.errstate(divide="ignore"):
        logp = np.log(p)
    C = np.empty((F, K))
    C[:nq] = (-0.5 * np.where(iu == ju, 1.0, 2.0)[None, :] * P[:, iu, ju]).T
    C[nq:nq + d] = Pmu.T
    C[-1] = (logp - np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
             - 0.5 * d * LOG_2PI - 0.5 * np.einsum("ki,ki->k", mu, Pmu))
    chunk = max(1, POSTERIOR_BUDGET // max(F, K))
    zsum = np.zeros(K)
    Phi = np.empty((min(chunk, N), F))
    for s in range(0, N, chunk):
        yc = y[s:s + chunk]
        ph = Phi[:yc.shape[0]]
        np.multiply(yc[:, iu], yc[:, ju], out=ph[:, :nq])
        ph[:, nq:nq + d] = yc
        ph[:, -1] = 1.0
        lj = ph @ C
        lj -= lj.max(axis=1, keepdims=True)
        np.exp(lj, out=lj)
        lj /= lj.sum(axis=1, keepdims=True)
        zsum += lj.sum(axis=0)
    return zsum


POSTERIORS = {"mahalanobis": _posterior_mahalanobis, "quadratic": _posterior_quadratic}


# ------------------------------------------------------------------------------------------- phases
def text_phase(rng, state, L, N, posterior="mahalanobis"):
    """Captioner refit: p'_i = (1/N) sum_j Z_i(y_j), Z under the model's own prior p."""
    counts = draw_counts(rng, state.p, N)
    y, _ = draw_images(rng, counts, state.mu, L)
    state.p = POSTERIORS[posterior](y, state.p, state.mu, L) / N


def segment_moments(y, offsets, counts):
    """Per-text mean and MLE scatter/n of the contiguous segments of y (two-pass, centred)."""
    K = counts.shape[0]
    n, d = y.shape
    nz = np.flatnonzero(counts)
    starts = offsets[nz]
    mean = np.zeros((K, d))
    if nz.size:
        mean[nz] = np.add.reduceat(y, starts, axis=0) / counts[nz, None]
    scatter = np.zeros((K, d, d))
    if n * d * d <= OUTER_BUDGET:
        yc = y - np.repeat(mean, counts, axis=0)
        if nz.size:
            scatter[nz] = np.add.reduceat(np.einsum("ni,nj->nij", yc, yc), starts, axis=0)
    else:
        for i in nz:
            yc = y[offsets[i]:offsets[i + 1]] - mean[i]
            np.matmul(yc.T, yc, out=scatter[i])
    cov = scatter / np.maximum(counts, 1)[:, None, None]
    return mean, cov


def image_phase(rng, state, L, N, fixed=None):
    """Per-text MLE refit (divisor n_i); texts with n_i < 2 keep their parameters."""
    counts = draw_counts(rng, state.p, N, fixed)
    y, offsets = draw_images(rng, counts, state.mu, L)
    mean, cov = segment_moments(y, offsets, counts)
    upd = counts >= 2
    state.mu[upd] = mean[upd]
    state.Sigma[upd] = cov[upd]


def run_round(rng, state, N, fixed=None, freeze_text=False, freeze_image=False, posterior="mahalanobis"):
    """One training round (Algorithm 1, M = N_t = 1).  Returns the number of regularised texts."""
    # Sigma does not change before the end of the image phase: one factorisation serves both phases.
    L, n_reg = factorize(state.Sigma)
    if not freeze_text:
        text_phase(rng, state, L, N, posterior)
    if not freeze_image:
        image_phase(rng, state, L, N, fixed)
    state.regularized = n_reg
    state.regularized_total += n_reg
    return n_reg


# --------------------------------------------------------------------------- diagonal covariances
def initial_state_diagonal(K, d, s2=0.1):
    """Paper defaults with diagonal covariances: Sigma is the (K, d) array of variances."""
    state = initial_state(K, 2 if d < 2 else d, s2)
    return State(state.p, state.mu, np.full((K, d), s2))


def draw_images_diagonal(rng, counts, mu, sd):
    """Images of a batch sorted by text, y = mu_i + sd_i * eps on each text's segment."""
    K, d = mu.shape
    offsets = np.zeros(K + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    y = rng.standard_normal((int(offsets[-1]), d))
    for i in np.flatnonzero(counts):
        s, e = offsets[i], offsets[i + 1]
        y[s:e] *= sd[i]
        y[s:e] += mu[i]
    return y, offsets


def posterior_diagonal(y, p, mu, var):
    """Sum over images of Z(y) with diagonal covariances, by one GEMM per chunk against (y^2, y)."""
    N, d = y.shape
    K = p.shape[0]
    with np.errstate(divide="ignore"):
        logp = np.log(p)
    prec = 1.0 / var
    C = np.empty((2 * d, K))
    C[:d] = -0.5 * prec.T
    C[d:] = (mu * prec).T
    const = logp - 0.5 * np.log(var).sum(axis=1) - 0.5 * d * LOG_2PI - 0.5 * np.einsum("ki,ki->k", mu * mu, prec)
    chunk = max(1, POSTERIOR_BUDGET // max(2 * d, K))
    zsum = np.zeros(K)
    Phi = np.empty((min(chunk, N), 2 * d))
    for s in range(0, N, chunk):
        yc = y[s:s + chunk]
        ph = Phi[:yc.shape[0]]
        np.multiply(yc, yc, out=ph[:, :d])
        ph[:, d:] = yc
        lj = ph @ C
        lj += const
        lj -= lj.max(axis=1, keepdims=True)
        np.exp(lj, out=lj)
        lj /= lj.sum(axis=1, keepdims=True)
        zsum += lj.sum(axis=0)
    return zsum


def run_round_diagonal(rng, state, N, fixed=None, freeze_text=False, freeze_image=False):
    """One training round with diagonal covariances (per-coordinate MLE refit)."""
    sd = np.sqrt(state.Sigma)
    if not freeze_text:
        counts = draw_counts(rng, state.p, N)
        y, _ = draw_images_diagonal(rng, counts, state.mu, sd)
        state.p = posterior_diagonal(y, state.p, state.mu, state.Sigma) / N
    if not freeze_image:
        counts = draw_counts(rng, state.p, N, fixed)
        y, offsets = draw_images_diagonal(rng, counts, state.mu, sd)
        nz = np.flatnonzero(counts >= 2)
        for i in nz:  # two-pass per segment: mean, then centred squares
            seg = y[offsets[i]:offsets[i + 1]]
            m = seg.mean(axis=0)
            state.mu[i] = m
            state.Sigma[i] = ((seg - m) ** 2).mean(axis=0)
    return 0


# ------------------------------------------------------------------------------------------ metrics
def gini_simpson(p):
    return float(1.0 - np.dot(p, p))


def traces(Sigma):
    """Per-text traces of a (K, d, d) stack, or of (K, d) diagonal variances."""
    return Sigma.sum(axis=1) if Sigma.ndim == 2 else np.trace(Sigma, axis1=1, axis2=2)


# ---------------------------------------------------------------------------------------------- CLI
def main(args):
    rng = np.random.default_rng(args.seed)
    kw = dict(fixed=args.fixed, freeze_text=args.freeze_text, freeze_image=args.freeze_image)
    if args.structure == "diagonal":
        state = initial_state_diagonal(args.K, args.d, args.s2)
        step = run_round_diagonal
    else:
        state = initial_state(args.K, args.d, args.s2)
        kw["posterior"] = args.posterior
        step = run_round
    if args.check:
        h0, tr0 = gini_simpson(state.p), float(traces(state.Sigma).mean())
        for _ in range(args.rounds):
            step(rng, state, args.N, **kw)
        t = args.rounds
        out = {"K": args.K, "d": args.d, "N": args.N, "rounds": t, "seed": args.seed,
               "gini_simpson_0": h0, "gini_simpson": gini_simpson(state.p),
               "mean_trace_0": tr0, "mean_trace": float(traces(state.Sigma).mean()),
               "weighted_trace": float(state.p @ traces(state.Sigma)),
               "support": int((state.p > 1e-12).sum()), "max_p": float(state.p.max()),
               "regularized_total": state.regularized_total,
               # E[H_t] lies in [(1-1/N)^t H_0, H_0] (text phase, T = 1).
               "gini_simpson_lower_bound": (1.0 - 1.0 / args.N) ** t * h0 if not args.freeze_text else h0}
        if args.fixed is not None and args.freeze_text and not args.freeze_image:
            # fixed(n), MLE, frozen text: E tr Sigma_t = ((n-1)/n)^t tr Sigma_0.
            out["expected_mean_trace"] = ((args.fixed - 1) / args.fixed) ** t * tr0
        print(json.dumps(out))
        return
    step(rng, state, args.N, **kw)  # warm-up (first-call allocations, BLAS init)
    t0 = time.perf_counter()
    for _ in range(args.rounds):
        step(rng, state, args.N, **kw)
    secs = time.perf_counter() - t0
    print(json.dumps({"K": args.K, "d": args.d, "N": args.N, "rounds": args.rounds,
                      "seconds": secs, "rounds_per_second": args.rounds / secs}))


if __name__ == "__main__":
    main(_ARGS)
