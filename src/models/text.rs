//! The categorical text model and the captioner refit (docs/model.md sections 1, 3 and 4).

use rand::Rng;
use rand_distr::{Binomial, Distribution};

use super::exp::{exp, exp_in_place};
use super::policy::DataPolicy;

/// A text model: a categorical distribution `p` over the texts `0..K`.
///
/// `p0` is the initial distribution, kept for drift metrics and as the source of real data.
#[derive(Debug, Clone, PartialEq)]
pub struct TextModel {
    /// Current probabilities, on the simplex.
    pub p: Vec<f64>,
    /// Initial probabilities.
    pub p0: Vec<f64>,
    /// What each refit trains on.
    pub policy: DataPolicy,
    /// Caption counts the policy keeps across refits: the soft counts of all data seen so far
    /// under [`DataPolicy::Accumulate`], the fixed real captions under [`DataPolicy::Augment`]
    /// (see [`seed_real`](Self::seed_real)); empty otherwise.
    pub accumulated: Vec<f64>,
}

impl TextModel {
    /// A model starting at `p0` with the given data policy. Under `Accumulate { initial }`
    /// the initial real dataset is `initial` captions drawn from `p0` with `rng`.
    pub fn new<R: Rng + ?Sized>(p0: Vec<f64>, policy: DataPolicy, rng: &mut R) -> Self {
        let mut accumulated = Vec::new();
        if let DataPolicy::Accumulate { initial } = policy {
            let mut counts = Vec::new();
            multinomial_counts(initial, &p0, rng, &mut counts);
            accumulated = counts.iter().map(|&c| c as f64).collect();
        }
        TextModel { p: p0.clone(), p0, policy, accumulated }
    }

    /// Draws the fixed real captions of `Augment`: `n` captions from `p0` (the empirical label
    /// distribution when `p0` comes from a dataset), drawn once with `rng`.
    pub fn seed_real<R: Rng + ?Sized>(&mut self, n: u64, rng: &mut R) {
        let mut counts = Vec::new();
        multinomial_counts(n, &self.p0, rng, &mut counts);
        self.accumulated = counts.iter().map(|&c| c as f64).collect();
    }

    /// Number of texts `K`.
    pub fn num_texts(&self) -> usize {
        self.p.len()
    }

    /// Replaces `p` by the refit on `soft_counts`, the per-text sums of caption posteriors
    /// (and of one-hot real captions under `Fresh`) over one batch.
    ///
    /// The new `p` is normalised by the sum of the counts rather than by the nominal batch
    /// size: the two agree up to rounding, and normalising by the sum keeps `p` on the
    /// simplex to machine precision over arbitrarily many rounds.
    pub fn refit(&mut self, soft_counts: &[f64]) {
        debug_assert_eq!(soft_counts.len(), self.p.len());
        if let DataPolicy::Augment { .. } = self.policy {
            // The fixed real captions plus this refit's generated ones.
            let total: f64 = soft_counts.iter().chain(&self.accumulated).sum();
            if total > 0.0 {
                for ((p, s), a) in self.p.iter_mut().zip(soft_counts).zip(&self.accumulated) {
                    *p = (s + a) / total;
                }
            }
            return;
        }
        let source: &[f64] = if let DataPolicy::Accumulate { .. } = self.policy {
            for (a, s) in self.accumulated.iter_mut().zip(soft_counts) {
                *a += s;
            }
            &self.accumulated
        } else {
            soft_counts
        };
        let total: f64 = source.iter().sum();
        if total > 0.0 {
            for (p, s) in self.p.iter_mut().zip(source) {
                *p = s / total;
            }
        }
    }

    /// Appends a new text with mass `eps`: `p <- ((1 - eps) p, eps)` (docs/model.md section 5, `new_text`).
    /// The initial distribution gains a zero entry, so drift metrics count the new text as drift.
    pub fn append_text(&mut self, eps: f64) {
        for p in &mut self.p {
            *p *= 1.0 - eps;
        }
        self.p.push(eps);
        self.p0.push(0.0);
        if let DataPolicy::Augment { .. } = self.policy {
            // No real caption names a text invented after the start.
            self.accumulated.push(0.0);
        } else if !self.accumulated.is_empty() {
            let total: f64 = self.accumulated.iter().sum();
            for a in &mut self.accumulated {
                *a *= 1.0 - eps;
            }
            self.accumulated.push(eps * total);
        }
    }

    /// Mixes in an external distribution: `p <- (1 - eps) p + eps r` (docs/model.md section 5).
    /// Under `Accumulate` the stored counts are mixed the same way, so the injection persists.
    pub fn mix(&mut self, eps: f64, r: &[f64]) {
        for (p, r) in self.p.iter_mut().zip(r) {
            *p = (1.0 - eps) * *p + eps * r;
        }
        // Under `Augment` the stored counts are the real captions, which an injection does not change.
        if !self.accumulated.is_empty() && matches!(self.policy, DataPolicy::Accumulate { .. }) {
            let total: f64 = self.accumulated.iter().sum();
            for (a, r) in self.accumulated.iter_mut().zip(r) {
                *a = (1.0 - eps) * *a + eps * r * total;
            }
        }
    }
}

/// The text temperature `tau_T(p)_i = p_i^(1/T) / sum_k p_k^(1/T)`, written into `out`.
///
/// Computed as a softmax of `log p / T` with the maximum subtracted, so that small `T`
/// cannot overflow; zero probabilities stay exactly zero. `T = 1` copies `p` unchanged. `exp` is
/// [`models::exp`](super::exp), identical on every machine.
pub fn tempered(p: &[f64], t: f64, out: &mut Vec<f64>) {
    out.clear();
    if t == 1.0 {
        out.extend_from_slice(p);
        return;
    }
    let max_log = p.iter().filter(|&&x| x > 0.0).map(|x| x.ln() / t).fold(f64::NEG_INFINITY, f64::max);
    out.extend(p.iter().map(|&x| if x > 0.0 { exp(x.ln() / t - max_log) } else { 0.0 }));
    let total: f64 = out.iter().sum();
    for x in out.iter_mut() {
        *x /= total;
    }
}

/// Draws multinomial counts of `n` trials over `probs` into `out` by sequential binomials
/// (`O(K)` draws instead of `O(n)`). `probs` need only be non-negative with a positive sum.
pub fn multinomial_counts<R: Rng + ?Sized>(n: u64, probs: &[f64], rng: &mut R, out: &mut Vec<usize>) {
    out.clear();
    let mut remaining_n = n;
    let mut remaining_mass: f64 = probs.iter().sum();
    for (i, &q) in probs.iter().enumerate() {
        if remaining_n == 0 || q <= 0.0 {
            out.push(0);
        } else if i + 1 == probs.len() || q >= remaining_mass {
            out.push(remaining_n as usize);
            remaining_n = 0;
        } else {
            let prob = (q / remaining_mass).clamp(0.0, 1.0);
            let k = Binomial::new(remaining_n, prob).expect("probability clamped to [0, 1]").sample(rng);
            out.push(k as usize);
            remaining_n -= k;
        }
        remaining_mass -= q;
    }
    // Mass left on texts after the last positive one (rounding) goes to the last positive text.
    if remaining_n > 0
        && let Some(last) = probs.iter().rposition(|&q| q > 0.0)
    {
        out[last] += remaining_n as usize;
    }
}

/// Log-weights below the row maximum by more than this give exactly zero weight: `exp`
/// rounds to 0 below -745.14, so skipping them is exact (and once conditionals separate, most
/// texts land there).
pub const UNDERFLOW: f64 = 745.2;

/// First step of a posterior row: subtracts the row's largest log-weight from every entry,
/// so that the largest weight is `exp(0) = 1` and none overflows. Returns `false`, leaving the
/// row as it was, when no log-weight is finite.
#[inline(always)]
pub fn subtract_max(log_weights: &mut [f64]) -> bool {
    let max = max_in_lanes(log_weights);
    if !max.is_finite() {
        return false;
    }
    for w in log_weights.iter_mut() {
        *w -= max;
    }
    true
}

/// Last step of a posterior row: adds the row's weights (the `exp` of [`subtract_max`]'s
/// output), divided by their sum ([`sum_in_lanes`]), to `soft_counts`.
#[inline(always)]
pub fn add_normalised(weights: &[f64], soft_counts: &mut [f64]) {
    let total = sum_in_lanes(weights);
    for (s, w) in soft_counts.iter_mut().zip(weights) {
        *s += w / total;
    }
}

/// Adds one sample's posterior to `soft_counts` from its row of log-weights (destroyed):
/// [`subtract_max`], `exp` ([`models::exp`](super::exp), the same bits on every machine; `-inf`
/// and anything below `-UNDERFLOW` give exactly 0), [`add_normalised`]; or `prior` when no
/// weight is finite (returning `false`). The blocked path
/// ([`accumulate_posterior`](super::posterior::accumulate_posterior)) runs the same steps with
/// one `exp` pass over a whole block of rows, value for value the same.
pub fn add_posterior_row(log_weights: &mut [f64], prior: &[f64], soft_counts: &mut [f64]) -> bool {
    if subtract_max(log_weights) {
        exp_in_place(log_weights);
        add_normalised(log_weights, soft_counts);
        true
    } else {
        add_prior(prior, soft_counts);
        false
    }
}

/// A row without a finite posterior weight (every likelihood underflowed): the image carries no
/// usable evidence, and the row adds the prior `p` to `soft_counts`.
#[inline(always)]
pub fn add_prior(prior: &[f64], soft_counts: &mut [f64]) {
    for (s, pi) in soft_counts.iter_mut().zip(prior) {
        *s += pi;
    }
}

/// `sum xs` in a fixed order the compiler can vectorise: eight partial sums over `xs` in
/// chunks of eight, combined pairwise, then the remainder in order.
#[inline(always)]
pub fn sum_in_lanes(xs: &[f64]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (l, x) in lanes.iter_mut().zip(chunk) {
            *l += x;
        }
    }
    let [a, b, c, d, e, f, g, h] = lanes;
    rest.iter().fold(((a + b) + (c + d)) + ((e + f) + (g + h)), |s, x| s + x)
}

/// The largest of `xs` ignoring NaNs (`-inf` when there is none), as `f64::max` folded over
/// `xs` gives, but over eight lanes the compiler can vectorise instead of one chain of
/// dependent comparisons. A maximum is exact, so the grouping cannot change its value; only a
/// zero maximum's sign may differ (`max(-0, +0)` may return either), which no caller can see:
/// the maximum is only subtracted from log-weights, and `exp(+-0) = 1` either way.
#[inline(always)]
pub fn max_in_lanes(xs: &[f64]) -> f64 {
    // `x > m` is false for a NaN `x`, so NaNs are skipped as `f64::max` skips them, and `m`,
    // starting at `-inf`, is never NaN: one compare-and-select (a single `maxpd` on x86)
    // instead of `f64::max`'s extra NaN test and blend.
    let larger = |m: f64, x: f64| if x > m { x } else { m };
    let mut lanes = [f64::NEG_INFINITY; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (l, &x) in lanes.iter_mut().zip(chunk) {
            *l = larger(*l, x);
        }
    }
    let [a, b, c, d, e, f, g, h] = lanes;
    let halves = (larger(larger(a, b), larger(c, d)), larger(larger(e, f), larger(g, h)));
    rest.iter().fold(larger(halves.0, halves.1), |m, &x| larger(m, x))
}

/// Adds the caption posterior of every sample to `soft_counts` (docs/model.md section 3, text phase).
///
/// `log_likelihood` is `n x K` row-major: `log_likelihood[j*K + i] = sum_m log q_m(y_j^m | i)`.
/// The posterior is `Z_i(y) = p_i q(y|i) / sum_k p_k q(y|k)`, computed in log space with the
/// maximum subtracted (log-sum-exp, [`add_posterior_row`]). Texts with `p_i = 0` get
/// exactly zero. Returns how many samples had no finite posterior weight at all (every
/// likelihood underflowed), for which the prior `p` is used: the image carries no usable
/// evidence. The text phase itself uses the blocked form of this,
/// [`accumulate_posterior`](super::posterior::accumulate_posterior), which never holds the
/// whole matrix; this one is the reference its tests compare against.
pub fn accumulate_caption_posterior(p: &[f64], log_likelihood: &[f64], soft_counts: &mut [f64], scratch: &mut Vec<f64>) -> u64 {
    let k = p.len();
    debug_assert_eq!(log_likelihood.len() % k.max(1), 0);
    scratch.clear();
    scratch.extend(p.iter().map(|&x| if x > 0.0 { x.ln() } else { f64::NEG_INFINITY }));
    scratch.resize(2 * k, 0.0);
    let (log_prior, weights) = scratch.split_at_mut(k);
    let mut fallbacks = 0;
    for row in log_likelihood.chunks_exact(k) {
        for ((w, lp), ll) in weights.iter_mut().zip(log_prior.iter()).zip(row) {
            *w = lp + ll;
        }
        if !add_posterior_row(weights, p, soft_counts) {
            fallbacks += 1;
        }
    }
    fallbacks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::entity_stream;

    #[test]
    fn temperature_one_is_identity_and_zeros_stay_zero() {
        let p = [0.5, 0.3, 0.2, 0.0];
        let mut out = Vec::new();
        tempered(&p, 1.0, &mut out);
        assert_eq!(out, p);
        tempered(&p, 0.5, &mut out);
        // p^2 normalised
        let z = 0.25 + 0.09 + 0.04;
        for (o, e) in out.iter().zip([0.25 / z, 0.09 / z, 0.04 / z, 0.0]) {
            assert!((o - e).abs() < 1e-15);
        }
        tempered(&p, 1e-3, &mut out);
        assert!((out[0] - 1.0).abs() < 1e-12 && out[3] == 0.0);
    }

    #[test]
    fn multinomial_counts_sum_to_n_and_skip_zero_mass() {
        let mut rng = entity_stream(7, 0, "t");
        let mut out = Vec::new();
        for _ in 0..100 {
            multinomial_counts(1000, &[0.2, 0.0, 0.5, 0.3, 0.0], &mut rng, &mut out);
            assert_eq!(out.iter().sum::<usize>(), 1000);
            assert_eq!(out[1], 0);
            assert_eq!(out[4], 0);
        }
    }

    #[test]
    fn posterior_handles_underflow_and_zero_prior() {
        let p = [0.5, 0.5, 0.0];
        let ll = [-1e308, -1e308, 0.0, f64::NEG_INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY];
        let mut soft = [0.0; 3];
        let mut scratch = Vec::new();
        let fallbacks = accumulate_caption_posterior(&p, &ll, &mut soft, &mut scratch);
        assert_eq!(fallbacks, 1);
        assert_eq!(soft, [1.0, 1.0, 0.0]);
    }
}
