//! Gaussian log-densities of a block of samples at matrix-product speed, with a bound on their
//! rounding error and the exact form to fall back on (the text phase's dominant cost,
//! docs/model.md section 3; the guard of [`crate::models::posterior`]).
//!
//! **Fast form.** Around a block centre `c` (the mean of the block's samples), with
//! `y' = y - c`, `m' = mu_i - c` and the precision `P = W^T W` of the factor's whitening `W`:
//! `log q(y|i) = log_norm_i - y'^T P y' / 2 + (P m')^T y' - m'^T P m' / 2`. The features
//! `(y'_a y'_b for a <= b, y'_a)` of all samples of a block times the matching coefficients
//! `(-P_aa / 2, -P_ab, (P m')_a)` of every live text is a matrix product of
//! `F = d (d + 1) / 2 + d` terms per entry: 55% of the whitening form's flops at `d = 32`, and
//! a product with a long inner dimension, which runs near the machine's GEMM rate. The
//! quadratic coefficients are computed once per round, one row per text; a block copies the
//! live texts' rows whole and appends the linear ones, which depend on its centre.
//!
//! **Its error.** With `R = (|y'| + |m'|)^2 / 2`, `rho_P` the largest row sum of `|P|` and
//! `rho_W` that of `|W|^T |W|` (upper bounds of the spectral radii of `|P|` and `|W|^T |W|`, so
//! `sum_ab |y'_a| |y'_b| |P_ab| <= rho_P |y'|^2` and `|P m'| <= rho_P |m'|`), every term of the
//! product is at most `rho_P R`: the product, the features and `P m'` round by at most
//! `gamma_(F + 2d + 8) rho_P R` (`gamma_n = n u / (1 - n u)`, Higham, *Accuracy and Stability
//! of Numerical Algorithms*, section 3.1).
//! Computing `P` from `W` (length-`d` products of entries of `|W|`) and the exact form's own
//! rounding (`2 gamma_(d+1) |z| || |W| |v| ||`, at most `gamma_(d+1) (rho_P + rho_W) |v|^2`)
//! add `gamma_(2d+2) (rho_P + rho_W) R`; a few roundings of the constants add `4 u |value|`. That sum bounds `|fast - exact|` per entry.
//! The bound grows with `|y'|^2 ||P||`: harmless for spread-out conditionals, enormous for
//! collapsed or near-singular ones, where the guard recomputes the entries that matter.
//! Centring each block on its samples' mean keeps `|y'|` and, for the text that generated the
//! block (samples are grouped by caption), `|m'|` at the conditional's own scale, so even a
//! collapsed text's own samples are usually accepted.
//!
//! **Exact form.** `z = W (y - mu_i)`, `log q = log_norm_i - |z|^2 / 2`: the difference first, so
//! a sample near a collapsed mean loses nothing to cancellation.
//!
//! **Small dimensions.** At `d <= 8` a block is scored by the exact form itself, compiled for
//! each `d` and vectorised across samples: it costs no more than the fast form's products and
//! bounds there (measured at `d = 8`: 20-30% less CPU per round), and the guard never fires.

use std::ops::Range;

use super::GaussianImageModel;
use super::factor::Factor;
use crate::linalg::gamma;
use crate::linalg::gemm::product;
use crate::models::posterior::{BlockLogDensity, scratch_of};

/// Per-text coefficients of the fast form, rebuilt with the factors.
#[derive(Debug, Clone, Default)]
pub(super) struct QuadraticForm {
    /// `K x Fq` (`Fq = d (d + 1) / 2`): text `i`'s coefficients of `y'_a y'_b`, `a <= b` in
    /// row-major upper-triangle order.
    quad: Vec<f64>,
    /// `K x d x d`: the precisions `P_i = W_i^T W_i`, column-major.
    precision: Vec<f64>,
    /// `K`: the error bound's factor of `R` (see the module documentation).
    bound: Vec<f64>,
}

impl QuadraticForm {
    /// Recomputes the coefficients of every text from its factor, reusing the storage.
    pub(super) fn update(&mut self, factors: &[Factor], d: usize) {
        let (k, fq) = (factors.len(), d * (d + 1) / 2);
        self.quad.resize(k * fq, 0.0);
        self.precision.resize(k * d * d, 0.0);
        self.bound.resize(k, 0.0);
        let (g_fast, g_exact) = (gamma(fq + 3 * d + 8), gamma(2 * d + 2));
        for (i, f) in factors.iter().enumerate() {
            let w = f.whiten.as_slice();
            let p = &mut self.precision[i * d * d..(i + 1) * d * d];
            let (mut rho_p, mut rho_w) = (0.0f64, 0.0f64);
            for a in 0..d {
                let wa = &w[a * d..(a + 1) * d];
                let (mut row_p, mut row_w) = (0.0, 0.0);
                for b in 0..d {
                    let wb = &w[b * d..(b + 1) * d];
                    // (W^T W)_ab: columns a and b of W (column-major), a length-d dot product.
                    let pab: f64 = wa.iter().zip(wb).map(|(x, y)| x * y).sum();
                    p[b * d + a] = pab;
                    row_p += pab.abs();
                    row_w += wa.iter().zip(wb).map(|(x, y)| x.abs() * y.abs()).sum::<f64>();
                }
                rho_p = rho_p.max(row_p);
                rho_w = rho_w.max(row_w);
            }
            // Rounding of the row sums themselves: a relative d u, covered by 2x slack on rho.
            self.bound[i] = 2.0 * (g_fast * rho_p + g_exact * (rho_p + rho_w));
            let q = &mut self.quad[i * fq..(i + 1) * fq];
            let mut f = 0;
            for a in 0..d {
                q[f] = -0.5 * p[a * d + a];
                f += 1;
                for b in a + 1..d {
                    q[f] = -p[b * d + a];
                    f += 1;
                }
            }
        }
    }
}

impl GaussianImageModel {
    /// The exact form on a block of `Full` conditionals in dimension `d <= 8` (where it is as
    /// fast as the fast form): the same operations in the same order as
    /// [`BlockLogDensity::exact`], so bit-identical to it, with zero error bounds. The block
    /// is transposed first so that each text's loop over samples runs on contiguous columns,
    /// vectorised across samples with the widest vectors the CPU offers (the same operations,
    /// so the same values on every machine). Returns `false` (doing nothing) when `d > 8`.
    fn add_exact_block(&self, y: &[f64], live: &[usize], values: &mut [f64], scratch: &mut Vec<f64>) -> bool {
        if !(1..=8).contains(&self.d) {
            return false;
        }
        self.exact_block_widest(y, live, values, scratch);
        true
    }

    /// [`exact_block_of_any_dimension`](Self::exact_block_of_any_dimension) with the widest
    /// vectors the CPU offers.
    fn exact_block_widest(&self, y: &[f64], live: &[usize], values: &mut [f64], scratch: &mut Vec<f64>) {
        let this = self;
        crate::linalg::widest_vectors!(
            GaussianImageModel::exact_block_of_any_dimension,
            this: &GaussianImageModel,
            y: &[f64],
            live: &[usize],
            values: &mut [f64],
            scratch: &mut Vec<f64>,
        );
    }

    /// [`exact_block`](Self::exact_block) for the model's `d` (at most 8).
    #[inline(always)]
    fn exact_block_of_any_dimension(&self, y: &[f64], live: &[usize], values: &mut [f64], scratch: &mut Vec<f64>) {
        match self.d {
            1 => self.exact_block::<1>(y, live, values, scratch),
            2 => self.exact_block::<2>(y, live, values, scratch),
            3 => self.exact_block::<3>(y, live, values, scratch),
            4 => self.exact_block::<4>(y, live, values, scratch),
            5 => self.exact_block::<5>(y, live, values, scratch),
            6 => self.exact_block::<6>(y, live, values, scratch),
            7 => self.exact_block::<7>(y, live, values, scratch),
            8 => self.exact_block::<8>(y, live, values, scratch),
            _ => unreachable!("add_exact_block checks d <= 8"),
        }
    }

    /// The loops of [`add_exact_block`](Self::add_exact_block), compiled into each of its
    /// instruction-set variants.
    ///
    /// Texts are scored [`GROUP`] at a time into columns of `scratch`, which are then added
    /// into the block's rows of `values` (`L` apart): each row is touched once per group
    /// instead of once per text, which kept every addition waiting on the cache.
    ///
    /// [`BlockLogDensity::exact`] starts `z` and `|z|^2` at zero; here they start at their
    /// first term. Adding a term to `+0` gives the term itself except that `-0` becomes `+0`,
    /// so `z` can differ only in the sign of a zero, which its square removes, and `|z|^2` (a
    /// sum of squares, never `-0`) not at all: the values are the same bits.
    #[inline(always)]
    fn exact_block<const D: usize>(&self, y: &[f64], live: &[usize], values: &mut [f64], scratch: &mut Vec<f64>) {
        let (b, l) = (y.len() / D, live.len());
        let (columns, out) = scratch_of(scratch, (D + GROUP) * b).split_at_mut(D * b);
        for (r, row) in y.chunks_exact(D).enumerate() {
            for (a, v) in row.iter().enumerate() {
                columns[a * b + r] = *v;
            }
        }
        for (g, group) in live.chunks(GROUP).enumerate() {
            for (&i, out) in group.iter().zip(out.chunks_exact_mut(b)) {
                let factor = &self.factors[i];
                let mut w = [[0.0; D]; D];
                for (wc, col) in w.iter_mut().zip(factor.whiten.as_slice().chunks_exact(D)) {
                    wc.copy_from_slice(col);
                }
                let mut mu = [0.0; D];
                mu.copy_from_slice(self.mu[i].as_slice());
                for (r, o) in out.iter_mut().enumerate() {
                    let mut v = [0.0; D];
                    for a in 0..D {
                        v[a] = columns[a * b + r] - mu[a];
                    }
                    // Index loops and a slice: the iterator forms of these loops (`map`, `skip`) are
                    // vectorised within a sample instead of across samples, at half the speed.
                    let mut z = [0.0; D];
                    for k in 0..D {
                        z[k] = w[0][k] * v[0];
                    }
                    for a in 1..D {
                        for k in 0..D {
                            z[k] += w[a][k] * v[a];
                        }
                    }
                    let mut q = z[0] * z[0];
                    for zr in &z[1..] {
                        q += zr * zr;
                    }
                    *o = factor.log_norm - 0.5 * q;
                }
            }
            let first = g * GROUP;
            if group.len() == GROUP {
                // A whole group: eight contiguous values per row, one vector addition.
                for (r, vrow) in values.chunks_exact_mut(l).enumerate() {
                    let column: [f64; GROUP] = std::array::from_fn(|j| out[j * b + r]);
                    for (v, o) in vrow[first..first + GROUP].iter_mut().zip(column) {
                        *v += o;
                    }
                }
            } else {
                for (r, vrow) in values.chunks_exact_mut(l).enumerate() {
                    for (j, v) in vrow[first..first + group.len()].iter_mut().enumerate() {
                        *v += out[j * b + r];
                    }
                }
            }
        }
    }
    /// The quadratic-feature form of a block of samples `y` (row-major, `d > 8`), with the
    /// widest vectors the CPU offers: its features, coefficients and per-entry assembly of
    /// values and bounds vectorise in each variant (the product dispatches on its own).
    fn quadratic_block(&self, y: &[f64], live: &[usize], values: &mut [f64], errors: &mut [f64], scratch: &mut Vec<f64>) {
        let this = self;
        crate::linalg::widest_vectors!(
            GaussianImageModel::quadratic_block_kernel,
            this: &GaussianImageModel,
            y: &[f64],
            live: &[usize],
            values: &mut [f64],
            errors: &mut [f64],
            scratch: &mut Vec<f64>,
        );
    }

    #[inline(always)]
    fn quadratic_block_kernel(&self, y: &[f64], live: &[usize], values: &mut [f64], errors: &mut [f64], scratch: &mut Vec<f64>) {
        let (d, l) = (self.d, live.len());
        let b = y.len() / d;
        let qf = &self.quadratic;
        let fq = d * (d + 1) / 2;
        let nf = fq + d;
        // Scratch: features (F x b, one column per sample), coefficients (L x F, one row per
        // live text), products (L x b), centre (d), m' (d), |y'| (b), per text |m'|, constant
        // and the bound's factor (3 L). Every part is overwritten below (the centre is zeroed there).
        let need = nf * b + l * nf + l * b + 2 * d + b + 3 * l;
        let (features, rest) = scratch_of(scratch, need).split_at_mut(nf * b);
        let (coefficients, rest) = rest.split_at_mut(l * nf);
        let (products, rest) = rest.split_at_mut(l * b);
        let (centre, rest) = rest.split_at_mut(d);
        let (shift, rest) = rest.split_at_mut(d);
        let (y_norm, rest) = rest.split_at_mut(b);
        let (m_norm, rest) = rest.split_at_mut(l);
        let (constant, bound) = rest.split_at_mut(l);
        centre.fill(0.0);
        for row in y.chunks_exact(d) {
            for (c, v) in centre.iter_mut().zip(row) {
                *c += v;
            }
        }
        for c in centre.iter_mut() {
            *c /= b as f64;
        }
        // Features of every sample, one column each: `y'_a y'_b` (a <= b), then `y'_a`.
        for ((row, phi), norm) in y.chunks_exact(d).zip(features.chunks_exact_mut(nf)).zip(y_norm.iter_mut()) {
            let (quad, lin) = phi.split_at_mut(fq);
            for ((v, yv), c) in lin.iter_mut().zip(row).zip(centre.iter()) {
                *v = yv - c;
            }
            // Row `a` of the upper triangle, `y'_a y'_b` for `b >= a`, as one slice product.
            let mut f = 0;
            for a in 0..d {
                for (q, yb) in quad[f..f + d - a].iter_mut().zip(&lin[a..]) {
                    *q = lin[a] * yb;
                }
                f += d - a;
            }
            *norm = lin.iter().map(|v| v * v).sum::<f64>().sqrt();
        }
        // Per live text, one row of coefficients: its per-round quadratic ones (a contiguous
        // copy), then `P m'`; and `|m'|`, the constant.
        for (li, (&i, row)) in live.iter().zip(coefficients.chunks_exact_mut(nf)).enumerate() {
            let (quad_row, linear) = row.split_at_mut(fq);
            quad_row.copy_from_slice(&qf.quad[i * fq..(i + 1) * fq]);
            for ((s, m), c) in shift.iter_mut().zip(self.mu[i].iter()).zip(centre.iter()) {
                *s = m - c;
            }
            let p = &qf.precision[i * d * d..(i + 1) * d * d];
            // `P m'` as `d` column updates, vectorised across its entries; entry `a` still sums
            // `P_ab m'_b` over `b` in order, from `-0.0` as `Iterator::sum` does (`P` is exactly
            // symmetric: `P_ab` and `P_ba` are the same dot product).
            linear.fill(-0.0);
            for (column, &s) in p.chunks_exact(d).zip(shift.iter()) {
                for (lin, pab) in linear.iter_mut().zip(column) {
                    *lin += pab * s;
                }
            }
            let mut quad = 0.0;
            for (pm, s) in linear.iter().zip(shift.iter()) {
                quad += pm * s;
            }
            m_norm[li] = shift.iter().map(|v| v * v).sum::<f64>().sqrt();
            constant[li] = self.factors[i].log_norm - 0.5 * quad;
            bound[li] = qf.bound[i];
        }
        product(l, nf, b, coefficients, nf, features, nf, products);
        // Per entry, contiguous arrays only (the per-text factors gathered above), so that the
        // loop runs on whole vectors.
        let (m_norm, constant, bound) = (&*m_norm, &*constant, &bound[..l]);
        for (r, ((vrow, erow), prod)) in
            values.chunks_exact_mut(l).zip(errors.chunks_exact_mut(l)).zip(products.chunks_exact(l)).enumerate()
        {
            let yn = y_norm[r];
            let per_text = constant.iter().zip(m_norm).zip(bound);
            for (((value, error), p), ((c, mn), g)) in vrow.iter_mut().zip(erow.iter_mut()).zip(prod).zip(per_text) {
                let v = p + c;
                *value += v;
                let reach = yn + mn;
                // The terms' bound, and the constant's own roundings (a few ulps of each part).
                *error += g * (0.5 * reach * reach) + 4.0 * f64::EPSILON * (c.abs() + v.abs());
            }
        }
    }
}

/// Texts of [`GaussianImageModel::exact_block`] scored before their values are added into
/// the block's rows.
const GROUP: usize = 8;

impl BlockLogDensity for GaussianImageModel {
    fn add_block(
        &self,
        samples: &[f64],
        rows: Range<usize>,
        live: &[usize],
        values: &mut [f64],
        errors: &mut [f64],
        scratch: &mut Vec<f64>,
    ) {
        if self.structure() != super::Structure::Full {
            return self.diagonal_form.add_block(&self.diagonal, samples, rows, live, values, errors, scratch);
        }
        let y = &samples[rows.start * self.d..rows.end * self.d];
        // Small dimensions: the exact form itself, which at `d <= 8` costs about what the fast
        // form's product and bound cost, and needs no guard.
        if self.add_exact_block(y, live, values, scratch) {
            return;
        }
        self.quadratic_block(y, live, values, errors, scratch);
    }

    fn exact(&self, samples: &[f64], row: usize, text: usize, scratch: &mut Vec<f64>) -> f64 {
        let d = self.d;
        if self.structure() != super::Structure::Full {
            return self.diagonal.log_density(&samples[row * d..(row + 1) * d], text);
        }
        let (v, z) = scratch_of(scratch, 2 * d).split_at_mut(d);
        z.fill(0.0);
        for ((v, y), m) in v.iter_mut().zip(&samples[row * d..(row + 1) * d]).zip(self.mu[text].iter()) {
            *v = y - m;
        }
        let w = self.factors[text].whiten.as_slice();
        for (col, &vc) in w.chunks_exact(d).zip(v.iter()) {
            for (zr, wr) in z.iter_mut().zip(col) {
                *zr += wr * vc;
            }
        }
        self.factors[text].log_norm - 0.5 * z.iter().map(|x| x * x).sum::<f64>()
    }
}
