//! Diagnostics of the generational Markov chain (docs/model.md section 7, after Vats et al.): a phase
//! label per round and conditional model, from its local and cumulative drift curves.
//!
//! For a conditional model in one replicate, the **local drift** at round `t` is
//! `L_t = sum_i F(q_t(.|i), q_{t-1}(.|i))` and the **cumulative drift** is
//! `C_t = sum_i F(q_t(.|i), q_0(.|i))`, with `F` the squared Frechet distance of the metrics
//! `frechet_local` and `frechet_to_initial` (summed over texts, as docs/model.md section 8 sums them).
//!
//! **Flat.** A curve `c_1, c_2, ...` is smoothed by its trailing window mean
//! `m_t = mean(c_s : max(1, t-w+1) <= s <= t)` (`w` = `window`), with `m_t = 0` for `t <= 0`:
//! the chain starts at its initial state, where both drifts are zero. The change over one
//! window beyond sampling noise, relative to the curve's peak, is
//! `delta_t = (|m_t - m_{t-w}| - z SE_t) / P_t`, where `P_t = max_{s <= t} |m_s|` is the
//! largest level the curve has reached so far, `SE_t = sqrt(v_t / n_t + v_{t-w} / n_{t-w})` is
//! the standard error of the difference of the two window means (`v` the sample variance of
//! the `n` values in a window; taken as 0 before round `2w`, while a window is not full) and
//! `z` = `noise_z`. The curve is
//! **flat** at `t` when `delta_t < threshold` (or when it has never left zero).
//! Dividing by the peak rather than by the current level makes a curve that has decayed to a
//! negligible fraction of its peak flat (an exponentially contracting covariance stops
//! counting as movement once its steps are small next to the early ones); comparing window
//! means and allowing `z` standard errors keeps the round-to-round sampling noise of the
//! refits (a fresh-data loop at its fixed point keeps moving by a random amount every round)
//! from reading as movement. `noise_z: 0` gives the plain relative change.
//!
//! **Phase.** `active` when both curves move, `slow` when exactly one is flat, `stationary`
//! when both are flat. The first `w` rounds compare against the zero drift of round 0 and are
//! therefore active unless the curve is already negligible. Round 0 (the initial state) has no
//! label.

use std::collections::VecDeque;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::metrics::MetricRow;
use crate::metrics::names::{FRECHET_LOCAL, FRECHET_TO_INITIAL};
pub use crate::scenario::DiagnosticsSpec;

/// The phase of the generational Markov chain at one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChainPhase {
    /// Both drift curves move.
    Active,
    /// One curve is flat, the other still moves.
    Slow,
    /// Both curves are flat.
    Stationary,
}

impl ChainPhase {
    /// The label written in `phases.csv`.
    pub fn label(self) -> &'static str {
        match self {
            ChainPhase::Active => "active",
            ChainPhase::Slow => "slow",
            ChainPhase::Stationary => "stationary",
        }
    }

    /// Parses a label of `phases.csv`.
    pub fn from_label(s: &str) -> Option<Self> {
        [ChainPhase::Active, ChainPhase::Slow, ChainPhase::Stationary].into_iter().find(|p| p.label() == s)
    }
}

impl fmt::Display for ChainPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// `delta_t` of every round of a curve (`curve[0]` is round 1), as defined in the module docs,
/// allowing `noise_z` standard errors.
pub fn relative_changes(curve: &[f64], window: usize, noise_z: f64) -> Vec<f64> {
    let mut change = RelativeChange::new(window, noise_z);
    curve.iter().map(|&c| change.push(c)).collect()
}

/// `delta_t` of a curve fed one round at a time, in `O(window)` memory, so that labelling a
/// run's phases costs the same memory after 10 rounds as after a million.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RelativeChange {
    w: usize,
    noise_z: f64,
    // The last `w` values (the current window), oldest first.
    values: VecDeque<f64>,
    // (mean, variance of the mean) of the last `w` windows, oldest first: the front is the
    // window `w` rounds back once `w` rounds have passed.
    windows: VecDeque<(f64, f64)>,
    peak: f64,
    t: usize,
}

impl RelativeChange {
    /// A curve with window `window` (at least 1) and noise allowance `noise_z`.
    pub fn new(window: usize, noise_z: f64) -> Self {
        let w = window.max(1);
        RelativeChange { w, noise_z, values: VecDeque::with_capacity(w + 1), windows: VecDeque::with_capacity(w + 1), peak: 0.0, t: 0 }
    }

    /// Takes the curve's next value and returns its `delta_t`.
    pub fn push(&mut self, value: f64) -> f64 {
        let w = self.w;
        self.values.push_back(value);
        if self.values.len() > w {
            self.values.pop_front();
        }
        // Direct window statistics (O(w) per round, w is small): no running sum whose roundoff
        // could build up over a long run.
        let n = self.values.len() as f64;
        let mean = self.values.iter().sum::<f64>() / n;
        let var = if self.values.len() < 2 { 0.0 } else { self.values.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0) };
        let (m, var_m) = (mean, var / n);
        self.peak = self.peak.max(m.abs());
        let (previous, var_previous) = if self.t >= w { self.windows[0] } else { (0.0, 0.0) };
        // The allowance needs both windows full: before round 2w the earlier window is
        // partial or the initial state, and a variance of one or two values says nothing.
        let noise = if self.t + 1 >= 2 * w { self.noise_z * (var_m + var_previous).sqrt() } else { 0.0 };
        self.windows.push_back((m, var_m));
        if self.windows.len() > w {
            self.windows.pop_front();
        }
        self.t += 1;
        if self.peak == 0.0 { 0.0 } else { ((m - previous).abs() - noise) / self.peak }
    }
}

/// The phase of one round from the `delta_t` of its local and cumulative drift curves.
fn classify(local_change: f64, cumulative_change: f64, threshold: f64) -> ChainPhase {
    match (local_change < threshold, cumulative_change < threshold) {
        (true, true) => ChainPhase::Stationary,
        (false, false) => ChainPhase::Active,
        _ => ChainPhase::Slow,
    }
}

/// Phase of every round from the local and cumulative drift curves (`[0]` is round 1).
pub fn phases(local: &[f64], cumulative: &[f64], spec: &DiagnosticsSpec) -> Vec<ChainPhase> {
    let w = spec.window as usize;
    let (dl, dc) = (relative_changes(local, w, spec.noise_z), relative_changes(cumulative, w, spec.noise_z));
    dl.iter().zip(&dc).map(|(&l, &c)| classify(l, c, spec.flat_threshold)).collect()
}

/// One labelled round of one conditional model's drift chain (a row of `phases.csv`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhaseRecord<'a> {
    /// Replicate index.
    pub replicate: u64,
    /// Round (from 1: round 0 is the initial state and has no label).
    pub round: u64,
    /// The conditional model.
    pub model: &'a str,
    /// `L_t`, the local drift summed over texts.
    pub local_drift: f64,
    /// `C_t`, the cumulative drift summed over texts.
    pub cumulative_drift: f64,
    /// `delta_t` of the local drift.
    pub local_change: f64,
    /// `delta_t` of the cumulative drift.
    pub cumulative_change: f64,
    /// The label.
    pub phase: ChainPhase,
}

/// The drift chain of one conditional model in one replicate.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Chain {
    replicate: u64,
    model: std::sync::Arc<str>,
    // This round's curve values, summed over texts as the rows arrive.
    local: f64,
    cumulative: f64,
    pending: bool,
    local_change: RelativeChange,
    cumulative_change: RelativeChange,
}

/// Labels the phases of every conditional model's drift chain as a run's rows stream past,
/// in `O(window)` memory per replicate and model whatever the number of rounds: the round
/// loop shows it each replicate's rows of each round (the order `metrics.csv` is written in),
/// and it emits that round's [`PhaseRecord`]s, in the order the models' rows came.
///
/// Its state goes into checkpoints (serialised without the index, which is rebuilt).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "ChainsState", into = "ChainsState")]
pub struct DriftChains {
    spec: DiagnosticsSpec,
    chains: Vec<Chain>,
    index: std::collections::HashMap<(u64, std::sync::Arc<str>), usize>,
}

/// What a checkpoint stores of [`DriftChains`].
#[derive(Serialize, Deserialize)]
struct ChainsState {
    spec: DiagnosticsSpec,
    chains: Vec<Chain>,
}

impl From<ChainsState> for DriftChains {
    fn from(state: ChainsState) -> Self {
        let index = state.chains.iter().enumerate().map(|(i, c)| ((c.replicate, c.model.clone()), i)).collect();
        DriftChains { spec: state.spec, chains: state.chains, index }
    }
}

impl From<DriftChains> for ChainsState {
    fn from(chains: DriftChains) -> Self {
        ChainsState { spec: chains.spec, chains: chains.chains }
    }
}

impl DriftChains {
    /// No chains yet, labelled by `spec`.
    pub fn new(spec: &DiagnosticsSpec) -> Self {
        DriftChains { spec: spec.clone(), chains: Vec::new(), index: Default::default() }
    }

    /// Takes one replicate's rows of one round and emits the labels of that round.
    pub fn observe(&mut self, replicate: u64, rows: &[MetricRow], mut emit: impl FnMut(PhaseRecord<'_>)) {
        let Some(round) = rows.first().map(|r| r.round) else { return };
        // Round 0 is the initial state: zero drift, no label.
        if round == 0 {
            return;
        }
        let (w, noise_z) = (self.spec.window as usize, self.spec.noise_z);
        let mut touched = false;
        for row in rows {
            let local = match &*row.metric {
                FRECHET_LOCAL => true,
                FRECHET_TO_INITIAL => false,
                _ => continue,
            };
            touched = true;
            let chains = &mut self.chains;
            let i = *self.index.entry((replicate, row.model.clone())).or_insert_with(|| {
                chains.push(Chain {
                    replicate,
                    model: row.model.clone(),
                    local: 0.0,
                    cumulative: 0.0,
                    pending: false,
                    local_change: RelativeChange::new(w, noise_z),
                    cumulative_change: RelativeChange::new(w, noise_z),
                });
                chains.len() - 1
            });
            let c = &mut chains[i];
            c.pending = true;
            if local {
                c.local += row.value;
            } else {
                c.cumulative += row.value;
            }
        }
        if !touched {
            return;
        }
        for c in self.chains.iter_mut().filter(|c| c.pending) {
            let (dl, dc) = (c.local_change.push(c.local), c.cumulative_change.push(c.cumulative));
            emit(PhaseRecord {
                replicate: c.replicate,
                round,
                model: &c.model,
                local_drift: c.local,
                cumulative_drift: c.cumulative,
                local_change: dl,
                cumulative_change: dc,
                phase: classify(dl, dc, self.spec.flat_threshold),
            });
            (c.local, c.cumulative, c.pending) = (0.0, 0.0, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constant_curve_is_flat_after_one_window_and_a_ramp_never_is() {
        let spec = DiagnosticsSpec { flat_threshold: 0.05, window: 4, noise_z: 2.0 };
        let constant = vec![2.0; 20];
        let d = relative_changes(&constant, 4, 2.0);
        // Rounds 1..4 compare against the zero drift of round 0: a full change.
        assert!(d[..4].iter().all(|&x| x == 1.0), "{d:?}");
        assert!(d[4..].iter().all(|&x| x == 0.0), "{d:?}");
        let ramp: Vec<f64> = (1..=40).map(f64::from).collect();
        // Window means of a ramp grow by w = 4 per window, against a noise allowance of
        // 2 sqrt(2 var / 4) = 1.83 (var = 5/3 for 4 consecutive integers) and a peak of at most
        // 38.5: delta_t >= (4 - 1.83) / 38.5 > 0.05.
        assert!(relative_changes(&ramp, 4, 2.0).iter().all(|&x| x > 0.05));
        let ph = phases(&constant, &ramp, &spec);
        assert_eq!(ph[2], ChainPhase::Active);
        assert_eq!(ph[10], ChainPhase::Slow);
        assert_eq!(phases(&constant, &constant, &spec)[10], ChainPhase::Stationary);
    }

    #[test]
    fn stationary_noise_is_flat_only_with_the_noise_allowance() {
        // A stationary noisy curve: 1 + a deterministic pseudo-random value in [-0.5, 0.5)
        // (a multiplicative congruential sequence), 400 rounds, w = 10. Window means of 10
        // values differ by about sqrt(2/10) x 0.29 = 0.13, far beyond 5% of the peak (about
        // 1.2), but within 2 standard errors of the difference 95% of the time.
        let mut x: u64 = 12345;
        let curve: Vec<f64> = (0..400)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                1.0 + ((x >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
            })
            .collect();
        let flat = |z: f64| relative_changes(&curve, 10, z)[20..].iter().filter(|&&d| d < 0.05).count() as f64 / 380.0;
        assert!(flat(2.0) > 0.9, "{}", flat(2.0));
        assert!(flat(0.0) < 0.5, "{}", flat(0.0));
    }

    #[test]
    fn exponential_decay_becomes_flat_once_small_next_to_its_peak() {
        // Plain relative change (noise_z = 0). c_t = r^t, w = 5. The peak is m_1 = r (the
        // one-round window). For t >= 2w both windows
        // are full: m_t = r^(t-w+1) (1 - r^w) / (w (1 - r)), so
        // delta_t = (m_{t-w} - m_t) / r = r^(t-2w) (1 - r^w)^2 / (w (1 - r)).
        let (r, w) = (0.9f64, 5usize);
        let curve: Vec<f64> = (1..=200).map(|t| r.powi(t)).collect();
        let d = relative_changes(&curve, w, 0.0);
        for t in 2 * w..200 {
            let closed = r.powi(t as i32 - 2 * w as i32) * (1.0 - r.powi(w as i32)).powi(2) / (w as f64 * (1.0 - r));
            assert!((d[t - 1] - closed).abs() < 1e-12, "round {t}: {} vs {closed}", d[t - 1]);
        }
        let first_flat = d.iter().position(|&x| x < 0.05).unwrap() + 1;
        // Solve the closed form for delta_t < 0.05: t > 2w + ln(0.05 w (1 - r) / (1 - r^w)^2) / ln r.
        let bound = 2.0 * w as f64 + (0.05 * w as f64 * (1.0 - r) / (1.0 - r.powi(w as i32)).powi(2)).ln() / r.ln();
        assert_eq!(first_flat, bound.floor() as usize + 1);
    }
}
