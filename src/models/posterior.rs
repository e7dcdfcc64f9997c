//! The blocked, fused caption posterior of the text phase (docs/model.md section 3): the soft
//! counts `sum_j Z_i(y_j)` without ever holding the `N x K` log-likelihood matrix.
//!
//! The batch is cut into blocks of [`BLOCK`] consecutive samples. For one block, every
//! conditional model adds the log-densities of its samples under the *live* texts only (texts
//! with `p_i = 0` have `Z_i = 0` exactly and are never scored), each with a bound on its
//! rounding error ([`BlockLogDensity`]). The block's rows are then screened: an entry that is
//! certainly below the row maximum by more than [`UNDERFLOW`] gets weight exactly zero (as in
//! the exact path, where `exp` underflows), an entry whose error bound exceeds [`TOLERANCE`] is
//! recomputed by the models' exact form, and the log-sum-exp of
//! [`add_posterior_row`](super::text::add_posterior_row) (with the crate's own, machine-independent [`exp`](super::exp::exp), in one pass over
//! the block) turns the rows into posterior weights. A block whose error bounds are all zero
//! (exact scorers, as at `d <= 8`) takes a shorter screen with the same values
//! (`screen_exact_rows`). Each block adds its rows into its own partial soft counts; the partials are summed
//! in block order. Block boundaries depend only on `N`, so the result is bit-identical whether
//! the blocks run on one thread or on many (rayon, above [`PARALLEL_ENTRIES`]).

use std::cell::RefCell;
use std::ops::Range;

use rayon::prelude::*;

use super::exp::exp_in_place;
use super::text::{UNDERFLOW, add_normalised, add_prior, max_in_lanes, subtract_max};

/// Samples per block: large enough for a matrix product to run at full speed, small enough
/// that a block's `BLOCK x K` log-densities and features stay in cache.
pub const BLOCK: usize = 256;

/// Largest accepted worst-case error of a fast log-density, in nats, weighted by the entry's
/// posterior weight: `2^-36`, about 1.5e-11. An entry with error bound `e` and weight at most
/// `z = min(1, exp(w + e - max))` (relative to the row's largest) is accepted when
/// `e <= TOLERANCE` or `e z <= TOLERANCE`, and recomputed exactly otherwise.
///
/// An entry off by `e` nats moves its posterior weight `Z` by at most about `2 e Z` (its own
/// error and, through the row's normaliser, the others'), so every accepted entry's weight is
/// within `3e-11` of the exact path's, relative for the entries that carry the row and
/// absolute (of the row's unit mass) for the faint ones, in the worst case where every
/// rounding of a length-`F` dot product goes the same way. Rounding errors are centred
/// and independent, so the realised differences are far smaller (about `1e-15` on the soft
/// counts, `tests/posterior.rs`). A bound at one ulp of the soft counts is not reachable by
/// any f64 evaluation, the exact form included: its own worst-case error at `d = 32` is about
/// `2e-13` nats. The guard's job is the cases where the fast form is wrong by whole nats
/// (collapsed and near-singular covariances, whose cancellation grows with `|y|^2 ||P||`).
pub const TOLERANCE: f64 = 1.0 / (1u64 << 36) as f64;

/// Scored entries (`N x live texts`) above which one batch's blocks run in parallel on the
/// current rayon pool: about a millisecond of work at `d = 8`, well above rayon's per-task cost.
///
/// Many replicates already keep every worker busy with whole worlds: rayon's work stealing
/// then runs a world's blocks on its own thread, in order, and the parallelism over worlds is
/// unchanged. A single large world spreads its blocks over the idle workers.
pub const PARALLEL_ENTRIES: usize = 1 << 18;

/// Log-densities of blocks of samples under a list of texts, callable from several threads.
///
/// Samples are the model's batch of the text phase (`n x dim`, row-major, grouped by caption).
/// Implementations must not call into rayon (a block is the unit of parallel work).
pub trait BlockLogDensity: Sync {
    /// Adds `log q(y_j | live[l])` to `values[r * L + l]` and a bound on its absolute error
    /// (against [`exact`](Self::exact)) to `errors[r * L + l]`, for every sample
    /// `j = rows.start + r` of `samples` and `L = live.len()`. An exact implementation adds
    /// zero errors. `scratch` is a per-thread buffer shared with [`exact`](Self::exact), taken
    /// through [`scratch_of`].
    fn add_block(
        &self,
        samples: &[f64],
        rows: Range<usize>,
        live: &[usize],
        values: &mut [f64],
        errors: &mut [f64],
        scratch: &mut Vec<f64>,
    );
    /// The exact `log q(y_j | text)` of sample `row`: the reference the error bounds of
    /// [`add_block`](Self::add_block) are measured against.
    fn exact(&self, samples: &[f64], row: usize, text: usize, scratch: &mut Vec<f64>) -> f64;
}

/// The first `need` numbers of a [`BlockLogDensity`]'s per-thread scratch, growing it if it is
/// shorter and never shrinking or clearing it: every block and exact entry shares the buffer,
/// so a shrink (a `clear`) made the next block zero megabytes again. What is read must be
/// written first.
pub fn scratch_of(scratch: &mut Vec<f64>, need: usize) -> &mut [f64] {
    if scratch.len() < need {
        scratch.resize(need, 0.0);
    }
    &mut scratch[..need]
}

/// A model's log-likelihoods already computed for the whole batch (`n x K` row-major, by
/// [`ConditionalModel::add_log_likelihood`](super::ConditionalModel::add_log_likelihood)):
/// the path of models without a blocked form (plugins). Exact by definition.
pub struct DenseLogLikelihood<'a> {
    /// `log q(y_j | i)` at `j * k + i`.
    pub values: &'a [f64],
    /// Texts `K`.
    pub k: usize,
}

impl BlockLogDensity for DenseLogLikelihood<'_> {
    fn add_block(&self, _: &[f64], rows: Range<usize>, live: &[usize], values: &mut [f64], _: &mut [f64], _: &mut Vec<f64>) {
        let l = live.len();
        for (r, j) in rows.enumerate() {
            let row = &self.values[j * self.k..(j + 1) * self.k];
            for (v, &i) in values[r * l..(r + 1) * l].iter_mut().zip(live) {
                *v += row[i];
            }
        }
    }

    fn exact(&self, _: &[f64], row: usize, text: usize, _: &mut Vec<f64>) -> f64 {
        self.values[row * self.k + text]
    }
}

/// One conditional model's contribution to the posterior: its blocked log-densities and the
/// samples it generated for the batch's captions.
#[derive(Clone, Copy)]
pub struct Scorer<'a> {
    /// The model's log-densities.
    pub model: &'a dyn BlockLogDensity,
    /// Its samples, `n x dim`.
    pub samples: &'a [f64],
}

/// What a posterior pass did beyond the soft counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PosteriorReport {
    /// Entries scored (samples times live texts).
    pub entries: u64,
    /// Entries whose fast log-density was recomputed in the exact form.
    pub recomputed: u64,
    /// Samples with no finite posterior weight (every likelihood underflowed): their prior is used.
    pub fallbacks: u64,
}

/// Buffers of [`accumulate_posterior`], reused from round to round.
#[derive(Debug, Default, Clone)]
pub struct PosteriorBuffers {
    live: Vec<usize>,
    prior: Vec<f64>,
    log_prior: Vec<f64>,
    /// Per block: `L` partial soft counts, then the block's recomputed and fallback counts.
    partial: Vec<f64>,
    last: PosteriorReport,
}

impl PosteriorBuffers {
    /// What the last pass through these buffers did.
    pub fn report(&self) -> PosteriorReport {
        self.last
    }
}

/// Per-thread buffers of one block.
#[derive(Default)]
struct BlockWorkspace {
    values: Vec<f64>,
    errors: Vec<f64>,
    // Shared by the scorers' blocks and, once they are done, their exact forms (whose small
    // needs then fit in its capacity: no allocation when the guard first fires).
    scratch: Vec<f64>,
    // One row's weight bounds `exp(w + e - floor)` for the guard.
    screen: Vec<f64>,
}

thread_local! {
    // One per worker thread, kept across rounds so that steady-state rounds allocate nothing.
    // Borrowed only inside one block, which never yields to rayon, so it is never borrowed twice.
    static WORKSPACE: RefCell<BlockWorkspace> = RefCell::default();
}

/// Adds the caption posterior of the `n` samples of `scorers` under the prior `p` to
/// `soft_counts` (docs/model.md section 3), block by block (see the module documentation).
///
/// The posterior multiplies the scorers' likelihoods (docs/model.md section 9). Texts with
/// `p_i = 0` get exactly zero. A sample without any finite posterior weight counts as the prior
/// `p` (its image carries no usable evidence), as in
/// [`accumulate_caption_posterior`](super::text::accumulate_caption_posterior).
pub fn accumulate_posterior(
    p: &[f64],
    n: usize,
    scorers: &[Scorer<'_>],
    buffers: &mut PosteriorBuffers,
    soft_counts: &mut [f64],
) -> PosteriorReport {
    let PosteriorBuffers { live, prior, log_prior, partial, last } = buffers;
    *last = PosteriorReport::default();
    live.clear();
    live.extend((0..p.len()).filter(|&i| p[i] > 0.0));
    prior.clear();
    prior.extend(live.iter().map(|&i| p[i]));
    log_prior.clear();
    log_prior.extend(prior.iter().map(|x| x.ln()));
    let l = live.len();
    if n == 0 || l == 0 {
        return PosteriorReport::default();
    }
    let blocks = n.div_ceil(BLOCK);
    let stride = l + 2;
    partial.clear();
    partial.resize(blocks * stride, 0.0);
    let texts = LiveTexts { live, prior, log_prior };
    let run = |(b, out): (usize, &mut [f64])| {
        let rows = b * BLOCK..((b + 1) * BLOCK).min(n);
        WORKSPACE.with_borrow_mut(|ws| score_block(rows, &texts, scorers, ws, out));
    };
    if n * l >= PARALLEL_ENTRIES && blocks > 1 {
        partial.par_chunks_mut(stride).enumerate().for_each(run);
    } else {
        partial.chunks_mut(stride).enumerate().for_each(run);
    }
    // The fixed reduction: block partials summed in block order.
    let mut report = PosteriorReport { entries: (n * l) as u64, ..PosteriorReport::default() };
    for block in partial.chunks(stride) {
        for (&i, &s) in live.iter().zip(block) {
            soft_counts[i] += s;
        }
        report.recomputed += block[l] as u64;
        report.fallbacks += block[l + 1] as u64;
    }
    *last = report;
    report
}

/// The texts with `p_i > 0`, their prior and its logarithm.
#[derive(Clone, Copy)]
struct LiveTexts<'a> {
    live: &'a [usize],
    prior: &'a [f64],
    log_prior: &'a [f64],
}

/// One block: scores, screens, recomputes and normalises its rows, and adds them to `out`
/// (`L` soft counts, then the recomputed and fallback counts).
fn score_block(rows: Range<usize>, texts: &LiveTexts<'_>, scorers: &[Scorer<'_>], ws: &mut BlockWorkspace, out: &mut [f64]) {
    let LiveTexts { live, prior, log_prior } = *texts;
    let (b, l) = (rows.len(), live.len());
    let BlockWorkspace { values, errors, scratch, screen } = ws;
    values.clear();
    values.resize(b * l, 0.0);
    errors.clear();
    errors.resize(b * l, 0.0);
    // Sized with the block, not when the guard first fires (which may be rounds later).
    screen.clear();
    screen.reserve(l);
    for s in scorers {
        s.model.add_block(s.samples, rows.clone(), live, values, errors, scratch);
    }
    let (soft_counts, counters) = out.split_at_mut(l);
    // One vectorised pass decides whether every error bound is zero (exact scorers, as at
    // `d <= 8`, report zeros): then no entry can be recomputed and the screen reduces to the
    // cut, which `screen_exact_rows` fuses with the row's first posterior step.
    let recomputed = if errors.iter().fold(false, |any, &e| any | (e != 0.0)) {
        screen_rows(rows, texts, scorers, values, errors, screen, scratch)
    } else {
        screen_exact_rows(values, errors, log_prior);
        0
    };
    // One `exp` pass over the whole block (full vectors whatever the number of texts), then
    // each row normalised and added, or its prior for a row without a finite weight.
    exp_in_place(values);
    let fallbacks = add_rows(values, errors, prior, soft_counts);
    counters[0] += recomputed as f64;
    counters[1] += fallbacks as f64;
}

/// The screen of a block with some nonzero error bound, with the widest vectors the CPU offers:
/// per row, the log prior added, entries certainly below the row's maximum by more than `exp`'s
/// range cut, entries whose error could move the posterior beyond [`TOLERANCE`] recomputed in
/// the exact form, then [`subtract_max`]. Returns how many entries were recomputed.
#[allow(clippy::too_many_arguments)]
fn screen_rows(
    rows: Range<usize>,
    texts: &LiveTexts<'_>,
    scorers: &[Scorer<'_>],
    values: &mut [f64],
    errors: &mut [f64],
    screen: &mut Vec<f64>,
    scratch: &mut Vec<f64>,
) -> u64 {
    crate::linalg::widest_vectors!(
        screen_rows_kernel => u64,
        rows: Range<usize>,
        texts: &LiveTexts<'_>,
        scorers: &[Scorer<'_>],
        values: &mut [f64],
        errors: &mut [f64],
        screen: &mut Vec<f64>,
        scratch: &mut Vec<f64>,
    )
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn screen_rows_kernel(
    rows: Range<usize>,
    texts: &LiveTexts<'_>,
    scorers: &[Scorer<'_>],
    values: &mut [f64],
    errors: &mut [f64],
    screen: &mut Vec<f64>,
    scratch: &mut Vec<f64>,
) -> u64 {
    let LiveTexts { live, log_prior, .. } = *texts;
    let l = live.len();
    let mut recomputed = 0u64;
    // Per row, passes over the whole row that the compiler vectorises; only rows where
    // some error bound exceeds TOLERANCE take the entry-by-entry screen.
    for (r, (row, err)) in values.chunks_exact_mut(l).zip(errors.chunks_exact_mut(l)).enumerate() {
        for (w, lp) in row.iter_mut().zip(log_prior) {
            *w += lp;
        }
        // A certain lower bound of the exact row maximum (NaN bounds are ignored by max).
        let floor = row.iter().zip(err.iter()).map(|(w, e)| w - e).fold(f64::NEG_INFINITY, f64::max);
        // Entries certainly below the exact maximum by more than exp's range: exactly zero
        // weight in the exact path too.
        let cut = floor - UNDERFLOW;
        for (w, e) in row.iter_mut().zip(err.iter()) {
            *w = if *w + e < cut { f64::NEG_INFINITY } else { *w };
        }
        if err.iter().fold(false, |wide, &e| wide | (e > TOLERANCE || e.is_nan())) {
            // Each entry's weight bound `exp(w + e - floor)`, for the whole row in one
            // vector pass (the same `exp` as entry by entry, so the same decisions; scalar
            // calls were most of this function's time at large scale, where most rows
            // take this branch).
            screen.clear();
            screen.extend(row.iter().zip(err.iter()).map(|(w, e)| *w + e - floor));
            exp_in_place(screen);
            // The cut is decided again on the cut row: `-inf + e < cut` exactly where
            // `w + e < cut` was, so an entry is recomputed only if it survived the cut.
            for (k, ((w, &e), &z)) in row.iter_mut().zip(err.iter()).zip(screen.iter()).enumerate() {
                if !(*w + e < cut || e <= TOLERANCE || e * z.min(1.0) <= TOLERANCE) {
                    let j = rows.start + r;
                    *w = log_prior[k] + scorers.iter().map(|s| s.model.exact(s.samples, j, live[k], scratch)).sum::<f64>();
                    recomputed += 1;
                }
            }
        }
        // The row's first posterior step; the error bounds are spent, so the row's first
        // entry of `err` keeps whether it has a finite weight (NaN when not).
        err[0] = if subtract_max(row) { 0.0 } else { f64::NAN };
    }
    recomputed
}

/// The screen and first posterior step of a block whose error bounds are all zero, with the
/// widest vectors the CPU offers: per row, the log prior added, the cut at the row maximum
/// minus [`UNDERFLOW`] and [`subtract_max`], in two passes over the row instead of five.
///
/// Value for value what the general screen gives with zero errors: `w - 0 = w` and
/// `w + 0 < cut` exactly when `w < cut`, so its floor is the row maximum, which survives the
/// cut and is therefore [`subtract_max`]'s maximum too (a `-inf` entry minus a finite maximum
/// stays `-inf`). A row without a finite maximum is marked NaN in `errors` (its first entry)
/// and left as it is, as there: its values are not read again.
fn screen_exact_rows(values: &mut [f64], errors: &mut [f64], log_prior: &[f64]) {
    crate::linalg::widest_vectors!(screen_exact_rows_loop, values: &mut [f64], errors: &mut [f64], log_prior: &[f64]);
}

/// The loop of [`screen_exact_rows`], compiled into each of its instruction-set variants,
/// with the row length known at compile time below eight texts (the paper's five: short rows
/// are all loop overhead otherwise).
#[inline(always)]
fn screen_exact_rows_loop(values: &mut [f64], errors: &mut [f64], log_prior: &[f64]) {
    match log_prior.len() {
        1 => screen_rows_of::<1>(values, errors, log_prior),
        2 => screen_rows_of::<2>(values, errors, log_prior),
        3 => screen_rows_of::<3>(values, errors, log_prior),
        4 => screen_rows_of::<4>(values, errors, log_prior),
        5 => screen_rows_of::<5>(values, errors, log_prior),
        6 => screen_rows_of::<6>(values, errors, log_prior),
        7 => screen_rows_of::<7>(values, errors, log_prior),
        _ => screen_rows_of::<0>(values, errors, log_prior),
    }
}

/// [`screen_exact_rows_loop`] for rows of `L` texts, or of `log_prior.len()` when `L = 0`.
#[inline(always)]
fn screen_rows_of<const L: usize>(values: &mut [f64], errors: &mut [f64], log_prior: &[f64]) {
    let l = if L == 0 { log_prior.len() } else { L };
    let log_prior = &log_prior[..l];
    for (row, err) in values.chunks_exact_mut(l).zip(errors.chunks_exact_mut(l)) {
        for (w, lp) in row.iter_mut().zip(log_prior) {
            *w += lp;
        }
        let max = max_in_lanes(row);
        if max.is_finite() {
            let cut = max - UNDERFLOW;
            for w in row.iter_mut() {
                *w = if *w < cut { f64::NEG_INFINITY } else { *w - max };
            }
        } else {
            err[0] = f64::NAN;
        }
    }
}

/// The last posterior step of a block's rows (`exp` already taken), with the widest vectors
/// the CPU offers: each row normalised and added to `soft_counts` ([`add_normalised`]), or the
/// prior for a row marked NaN in `errors`. Returns how many rows took the prior.
fn add_rows(values: &[f64], errors: &[f64], prior: &[f64], soft_counts: &mut [f64]) -> u64 {
    crate::linalg::widest_vectors!(add_rows_loop => u64, values: &[f64], errors: &[f64], prior: &[f64], soft_counts: &mut [f64])
}

/// The loop of [`add_rows`], compiled into each of its instruction-set variants. Below eight
/// texts the soft counts are summed in a local array the compiler keeps in registers (the same
/// additions in the same order), instead of each row's additions waiting on the last row's
/// stores.
#[inline(always)]
fn add_rows_loop(values: &[f64], errors: &[f64], prior: &[f64], soft_counts: &mut [f64]) -> u64 {
    match prior.len() {
        1 => add_rows_of::<1>(values, errors, prior, soft_counts),
        2 => add_rows_of::<2>(values, errors, prior, soft_counts),
        3 => add_rows_of::<3>(values, errors, prior, soft_counts),
        4 => add_rows_of::<4>(values, errors, prior, soft_counts),
        5 => add_rows_of::<5>(values, errors, prior, soft_counts),
        6 => add_rows_of::<6>(values, errors, prior, soft_counts),
        7 => add_rows_of::<7>(values, errors, prior, soft_counts),
        _ => add_rows_to(values, errors, prior, soft_counts),
    }
}

/// [`add_rows_loop`] for rows of `L` texts, summed in registers.
#[inline(always)]
fn add_rows_of<const L: usize>(values: &[f64], errors: &[f64], prior: &[f64], soft_counts: &mut [f64]) -> u64 {
    let mut sums = [0.0; L];
    sums.copy_from_slice(soft_counts);
    let fallbacks = add_rows_to(values, errors, &prior[..L], &mut sums);
    soft_counts.copy_from_slice(&sums);
    fallbacks
}

/// [`add_rows_loop`]'s rows added into `soft_counts`.
#[inline(always)]
fn add_rows_to(values: &[f64], errors: &[f64], prior: &[f64], soft_counts: &mut [f64]) -> u64 {
    let l = prior.len();
    let mut fallbacks = 0;
    for (row, err) in values.chunks_exact(l).zip(errors.chunks_exact(l)) {
        if err[0].is_nan() {
            fallbacks += 1;
            add_prior(prior, soft_counts);
        } else {
            add_normalised(row, soft_counts);
        }
    }
    fallbacks
}
