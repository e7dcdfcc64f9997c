//! Log-densities of the structured families (`Diagonal`, `Isotropic`) for a block of samples at
//! matrix-product speed, with a rigorous bound on their rounding error; the exact `O(d)` kernel
//! of [`DiagonalDensity`] is the form the posterior's guard falls back on (docs/model.md
//! section 14; the guard of [`crate::models::posterior`]). The `Full` family's form is in
//! `loglik`; this one follows its error analysis.
//!
//! **Fast form.** With `w_a = r_a^2` (`r_a = 1 / sd_a` the stored inverse standard deviations
//! of text `i`, floored as the exact kernel floors them), a block centre `c` (the mean of the
//! block's samples), `y' = y - c` and `m' = mu_i - c`:
//! `log q(y|i) = log_norm_i - A + L - C` with `A = sum_a w_a y'_a^2 / 2`,
//! `L = sum_a (w_a m'_a) y'_a` and `C = sum_a w_a m'_a^2 / 2`. `A` and `L` of every sample of
//! the block against every live text are two matrix products with inner dimension `d` (the
//! features `y'^2` and `y'` of the samples times the rows `w_i` and `w_i m'_i` of the texts;
//! for `Isotropic` texts `A = w_i |y'|^2 / 2` needs no product), `C` one `O(d)` sum per text and
//! block: `2 d` multiply-adds per entry in a product that runs near the machine's GEMM rate,
//! against the exact kernel's `3 d` operations in scalar-vector loops.
//!
//! **Its error.** Let `u = eps / 2` and `gamma_n = n u / (1 - n u)` (Higham, *Accuracy and
//! Stability of Numerical Algorithms*, section 3.1: a sum of `n` terms computed in any order,
//! each term carrying `k` roundings of its own, is off by at most `gamma_(n-1+k)` times the
//! sum of the terms' magnitudes). The products are made in chunks of at most [`CHUNK`] inner
//! terms, each into its own output, and the chunks summed here, so that no term of `A` or `L`
//! goes through more than `g = gamma_(CHUNK + chunks + 4)` roundings (the bound holds for any
//! order of summation; [`product`]'s is one fixed chain of fused multiply-adds, so the same bits
//! on every machine; one call over all `d` terms would allow `gamma_(d+4)`, twice as much at
//! `d = 512`). With `A*`, `L*`, `C*` the exact values on the f64 inputs:
//! - `A`'s terms are all of one sign: `|A - A*| <= g_A A*`, `g_A = g` (`Isotropic`:
//!   `gamma_(d+4)`, the sum `|y'|^2`);
//! - `L`'s terms are bounded through Cauchy-Schwarz in the weights `w`:
//!   `sum_a |w_a m'_a y'_a| <= 2 sqrt(A* C*)`, so `|L - L*| <= 2 g sqrt(A* C*)`;
//! - `C` is summed in four lanes: `|C - C*| <= gamma_(d/4+12) C*`;
//! - assembling `(L - A) + (log_norm - C)` rounds three times: at most `3 u (|log_norm| + C +
//!   A + |L|)`;
//! - the exact form itself ([`DiagonalDensity::log_density`]) is off from the true value by at
//!   most `gamma_(d/4+9) Q / 2 + u |value|`, with `Q / 2 = A* - L* + C* <= (sqrt A* + sqrt C*)^2`.
//!
//! Their sum bounds `|fast - exact|` per entry; `A*`, `C*` are replaced by the computed `A`, `C`
//! and everything is multiplied by `1 + 2^-20`, which covers the factors `1 / (1 - gamma)` and
//! the roundings of evaluating the bound. At the platform scale (`d = 512`, samples of the
//! text's own law, `A ~ d / 2`) the bound is `1.1e-11` to `1.8e-11` nats, around the
//! posterior's tolerance (`1.5e-11`): the guard recomputes a few entries near a row's maximum
//! (the exact kernel took about 1% of the round in `perf`) and accepts the rest. Collapsed
//! coordinates (`w` huge) or a block centre far from a text's mean (`C` huge) make the bound
//! large, and the guard recomputes the entries that matter in the exact form.
//!
//! **Layout.** The rows `w_i` are built once per refit ([`DiagonalForm::update`]); a block
//! uses them in place when its live texts are consecutive and gathers them with one contiguous
//! copy per text otherwise; the rows `w_i m'_i` are made per block. Texts are processed in
//! tiles of [`TEXT_TILE`] so that the products of a tile stay in the core's cache until they
//! are combined. The products read the text-major rows as a transposed matrix through strides
//! (no transposed copy).

use std::ops::Range;

use super::structure::{DiagonalDensity, exact_depth};
use crate::linalg::gamma;
use crate::linalg::gemm::product;
use crate::models::posterior::scratch_of;

/// Largest inner dimension of one matrix product: the product's own depth block (so chunking
/// costs no speed), and the bound's `gamma` stays near `gamma_(CHUNK)` however large `d` grows.
const CHUNK: usize = 256;

/// Live texts whose products are made and combined together: their products (`2 x chunks x
/// TEXT_TILE x 256` numbers, 1 MiB at `d = 512`) stay in the core's L2 cache.
const TEXT_TILE: usize = 128;

/// Slack on the error bound: covers the factors `1 / (1 - gamma_n)` (below `1 + 1e-12`) and the
/// roundings of evaluating the bound itself (a few ulps of positive terms).
const SLACK: f64 = 1.0 + 1.0 / (1u64 << 20) as f64;

/// Per-text coefficients of the fast form, rebuilt with the likelihood constants.
#[derive(Debug, Clone, Default)]
pub(super) struct DiagonalForm {
    /// `K x d`, text-major: `w_ia = r_ia^2` of [`DiagonalDensity`]'s inverse standard deviations.
    precision: Vec<f64>,
}

/// What the bound of one block needs besides the products (see the module documentation).
struct BoundCoefficients {
    /// Factor of `A`.
    quadratic: f64,
    /// Factor of `sqrt(A) sqrt(C)`.
    cross: f64,
    /// Factor of `C`.
    constant: f64,
    /// Factor of `|log_norm|`.
    norm: f64,
    /// Factor of `|L|`.
    linear: f64,
}

impl BoundCoefficients {
    fn new(d: usize, isotropic: bool) -> Self {
        let u = f64::EPSILON / 2.0;
        let chunks = d.div_ceil(CHUNK);
        let g = gamma(CHUNK.min(d) + chunks + 4);
        let g_a = if isotropic { gamma(d + 4) } else { g };
        let (g_c, g_exact) = (gamma(d / 4 + 12), gamma(exact_depth(d)));
        BoundCoefficients {
            quadratic: SLACK * (g_a + g_exact + 4.0 * u),
            cross: SLACK * 2.0 * (g + g_exact + u),
            constant: SLACK * (g_c + g_exact + 4.0 * u),
            norm: SLACK * 4.0 * u,
            linear: SLACK * 3.0 * u,
        }
    }
}

impl DiagonalForm {
    /// Recomputes the rows `w_i` from `density`, reusing the storage.
    pub(super) fn update(&mut self, density: &DiagonalDensity) {
        self.precision.resize(density.inv_sd.len(), 0.0);
        for (w, r) in self.precision.iter_mut().zip(&density.inv_sd) {
            *w = r * r;
        }
    }

    /// [`BlockLogDensity::add_block`](crate::models::posterior::BlockLogDensity::add_block) of
    /// the structured families: values and error bounds of samples `rows` of `samples` against
    /// the texts `live`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn add_block(
        &self,
        density: &DiagonalDensity,
        samples: &[f64],
        rows: Range<usize>,
        live: &[usize],
        values: &mut [f64],
        errors: &mut [f64],
        scratch: &mut Vec<f64>,
    ) {
        let this = self;
        crate::linalg::widest_vectors!(
            DiagonalForm::add_block_kernel,
            this: &DiagonalForm,
            density: &DiagonalDensity,
            samples: &[f64],
            rows: Range<usize>,
            live: &[usize],
            values: &mut [f64],
            errors: &mut [f64],
            scratch: &mut Vec<f64>,
        );
    }

    /// [`add_block`](Self::add_block)'s loops, compiled into each instruction-set variant: the
    /// features, the shifted rows and the per-entry assembly of values and bounds run over
    /// contiguous slices, so they vectorise (`sqrt` included, which IEEE rounds correctly).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn add_block_kernel(
        &self,
        density: &DiagonalDensity,
        samples: &[f64],
        rows: Range<usize>,
        live: &[usize],
        values: &mut [f64],
        errors: &mut [f64],
        scratch: &mut Vec<f64>,
    ) {
        let (d, b, l) = (density.d, rows.len(), live.len());
        let isotropic = density.isotropic;
        let chunks = d.div_ceil(CHUNK);
        let quadratic_products = if isotropic { 0 } else { chunks };
        let tile = TEXT_TILE.min(l);
        let y = &samples[rows.start * d..rows.end * d];
        // Scratch: centre (d), linear features (d x b), quadratic features (d x b, or the b
        // norms |y'|^2), per tile: rows w m' and gathered rows w (2 x tile x d), per-text
        // terms of the bound and constant (4 x tile), one sample's chunk sums (2 x tile),
        // products ((chunks + quadratic) x tile x b). Every part is written before it is read:
        // no clearing.
        let quadratic_features = if isotropic { b } else { d * b };
        let products = (chunks + quadratic_products) * tile * b;
        let need = d + d * b + quadratic_features + 2 * tile * d + 6 * tile + products;
        let (centre, rest) = scratch_of(scratch, need).split_at_mut(d);
        let (linear_features, rest) = rest.split_at_mut(d * b);
        let (quadratic_features, rest) = rest.split_at_mut(quadratic_features);
        let (shifted, rest) = rest.split_at_mut(tile * d);
        let (gathered, rest) = rest.split_at_mut(tile * d);
        let (per_text, rest) = rest.split_at_mut(4 * tile);
        let (sums, rest) = rest.split_at_mut(2 * tile);
        let products = &mut rest[..products];

        centre.fill(0.0);
        for row in y.chunks_exact(d.max(1)) {
            for (c, v) in centre.iter_mut().zip(row) {
                *c += v;
            }
        }
        for c in centre.iter_mut() {
            *c /= b as f64;
        }
        // Features, one column of `d` per sample (the samples' own row-major layout).
        for (r, row) in y.chunks_exact(d.max(1)).enumerate() {
            let lin = &mut linear_features[r * d..(r + 1) * d];
            for ((f, v), c) in lin.iter_mut().zip(row).zip(centre.iter()) {
                *f = v - c;
            }
            if isotropic {
                quadratic_features[r] = lin.iter().map(|v| v * v).sum();
            } else {
                for (q, f) in quadratic_features[r * d..(r + 1) * d].iter_mut().zip(lin.iter()) {
                    *q = f * f;
                }
            }
        }

        let bound = BoundCoefficients::new(d, isotropic);
        for t0 in (0..l).step_by(TEXT_TILE) {
            let texts = &live[t0..(t0 + TEXT_TILE).min(l)];
            let tl = texts.len();
            let (cross, rest) = per_text.split_at_mut(tile);
            let (constant, rest) = rest.split_at_mut(tile);
            let (kappa, isotropic_w) = rest.split_at_mut(tile);
            for (li, &i) in texts.iter().enumerate() {
                let (m, w) = (&density.mu[i * d..(i + 1) * d], &self.precision[i * d..(i + 1) * d]);
                let row = &mut shifted[li * d..(li + 1) * d];
                let c = 0.5 * shifted_row(m, w, centre, row);
                let log_norm = density.log_norm[i];
                cross[li] = bound.cross * c.sqrt();
                constant[li] = log_norm - c;
                kappa[li] = bound.constant * c + bound.norm * log_norm.abs();
                isotropic_w[li] = w.first().copied().unwrap_or(0.0);
            }
            // The rows w of the tile: in place when its texts are consecutive.
            let consecutive = texts[tl - 1] - texts[0] == tl - 1;
            let precision: &[f64] = if consecutive {
                &self.precision[texts[0] * d..(texts[tl - 1] + 1) * d]
            } else {
                for (li, &i) in texts.iter().enumerate() {
                    gathered[li * d..(li + 1) * d].copy_from_slice(&self.precision[i * d..(i + 1) * d]);
                }
                &gathered[..tl * d]
            };
            let (linear_products, quadratic_products_out) = products.split_at_mut(chunks * tl * b);
            for (q, k0) in (0..d).step_by(CHUNK).enumerate() {
                let kc = CHUNK.min(d - k0);
                let out = &mut linear_products[q * tl * b..(q + 1) * tl * b];
                product(tl, kc, b, &shifted[k0..tl * d], d, &linear_features[k0..], d, out);
                if !isotropic {
                    let out = &mut quadratic_products_out[q * tl * b..(q + 1) * tl * b];
                    product(tl, kc, b, &precision[k0..], d, &quadratic_features[k0..], d, out);
                }
            }
            // Exactly `chunks` products each (the scratch holds a whole tile's).
            let linear_products = &linear_products[..chunks * tl * b];
            let quadratic_products_out = &quadratic_products_out[..quadratic_products * tl * b];
            let (quadratic_sum, linear_sum) = sums.split_at_mut(tile);
            let (quadratic_sum, linear_sum) = (&mut quadratic_sum[..tl], &mut linear_sum[..tl]);
            let (cross, constant, kappa) = (&cross[..tl], &constant[..tl], &kappa[..tl]);
            for (r, (vrow, erow)) in values.chunks_exact_mut(l).zip(errors.chunks_exact_mut(l)).enumerate() {
                let (vrow, erow) = (&mut vrow[t0..t0 + tl], &mut erow[t0..t0 + tl]);
                // Each entry's chunk products summed in chunk order from zero, a text per lane.
                if isotropic {
                    let norm = quadratic_features[r];
                    for (s, w) in quadratic_sum.iter_mut().zip(&isotropic_w[..tl]) {
                        *s = w * norm;
                    }
                } else {
                    chunk_sums(quadratic_products_out, tl * b, r * tl, quadratic_sum);
                }
                chunk_sums(linear_products, tl * b, r * tl, linear_sum);
                for (li, (v, e)) in vrow.iter_mut().zip(erow.iter_mut()).enumerate() {
                    let a = 0.5 * quadratic_sum[li];
                    let p = linear_sum[li];
                    *v += (p - a) + constant[li];
                    *e += bound.quadratic * a + cross[li] * a.sqrt() + kappa[li] + bound.linear * p.abs();
                }
            }
        }
    }
}

/// `sums[t] = 0 + products[at + t] + products[stride + at + t] + ...` over the chunks that
/// `products` holds (`stride` numbers each), in chunk order.
#[inline(always)]
fn chunk_sums(products: &[f64], stride: usize, at: usize, sums: &mut [f64]) {
    sums.fill(0.0);
    let n = sums.len();
    for chunk in products.chunks_exact(stride) {
        for (s, p) in sums.iter_mut().zip(&chunk[at..at + n]) {
            *s += p;
        }
    }
}

/// Writes the row `w_a (m_a - c_a)` into `row` and returns `sum_a w_a (m_a - c_a)^2`, summed in
/// four lanes (so the sum's error is `gamma_(d/4+12)`: five roundings per term, at most `d/4`
/// in its lane, three more combining lanes and tail).
#[inline(always)]
fn shifted_row(m: &[f64], w: &[f64], c: &[f64], row: &mut [f64]) -> f64 {
    let mut lanes = [0.0f64; 4];
    let body = m.len() - m.len() % 4;
    for (((mq, wq), cq), rq) in m[..body].chunks_exact(4).zip(w.chunks_exact(4)).zip(c.chunks_exact(4)).zip(row.chunks_exact_mut(4)) {
        for k in 0..4 {
            let shift = mq[k] - cq[k];
            let t = wq[k] * shift;
            rq[k] = t;
            lanes[k] += t * shift;
        }
    }
    let mut tail = 0.0;
    for k in body..m.len() {
        let shift = m[k] - c[k];
        let t = w[k] * shift;
        row[k] = t;
        tail += t * shift;
    }
    (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]) + tail
}
