//! The matrix product behind the blocked log-densities (the text phase's dominant cost above
//! `d = 8` and for the structured families), with the same bits on every machine.
//!
//! **Why coevo's own.** BLAS libraries and `matrixmultiply` choose their kernel at run time, and
//! the kernels differ in how they sum: `matrixmultiply` uses fused multiply-adds on AVX2 and
//! AVX-512, a separate multiply and add on AVX, its own kernel on NEON, and combines depth
//! blocks with `alpha` and `beta` in between. The last bits of a product, hence of a posterior and
//! of every round after it, would then depend on the machine, and coevo promises the same
//! numbers everywhere.
//!
//! **The one rule.** Every entry is one chain in a fixed order:
//! `c = 0; c = fma(a_j, b_j, c)` for `j = 0, 1, ..., k - 1`, with `fma` the exactly rounded
//! fused multiply-add ([`f64::mul_add`]). The register tile, the depth blocking and the vector
//! width only change how many chains run side by side and where a chain is parked between two
//! depth blocks (stored as an `f64` and reloaded, which loses nothing): never the operations of a
//! chain. So every instruction set, tile and thread count gives the same bits. The fused
//! multiply-add is one instruction on every CPU of the last decade (x86-64 with AVX2 or
//! AVX-512, every 64-bit ARM); on an x86-64 CPU without it (before 2013) libm computes the same
//! value in software, many times slower.
//!
//! **Layout** (the BLIS loop nest). The depth is cut into chunks of `KC` (256); per chunk, the
//! columns of `b` are packed into panels of `NR` (`[j][NR]`) and blocks of `MC` (128) rows of `a`
//! into panels of `MR` (`[j][MR]`, zero rows padding the last), so that the micro-kernel reads
//! both with unit stride. The micro-kernel keeps an `NR x MR` tile of `c` in registers through
//! the chunk: `MR x NR` multiply-adds per `MR + NR` numbers read. Its size is chosen per
//! instruction set (`widest_vectors!`): 16 x 12 with AVX-512's 32 registers of
//! 8 numbers, 8 x 6 with AVX2's 16 registers of 4, 8 x 6 on the baseline (NEON has 32 of 2).

use std::cell::RefCell;

use nalgebra::DMatrix;

/// Depth of one chunk: a `KC x NR` panel of `b` (24 KiB for `NR = 12`) stays in the core's L1
/// cache while the panels of `a` stream past it.
const KC: usize = 256;

/// Rows of `a` packed together: an `MC x KC` block (256 KiB) stays in the L2 cache while every
/// panel of `b` passes over it.
const MC: usize = 128;

thread_local! {
    // The packed panels of `a` then `b`, per thread, grown to the largest product seen and
    // kept: steady-state rounds allocate nothing.
    static PACKED: RefCell<Vec<f64>> = RefCell::default();
}

/// `c = a b`, overwritten, for `a` an `m x k` matrix stored by rows `lda` apart (text-major
/// coefficient rows, read as they are), `b` a `k x n` matrix stored by columns `ldb` apart (a
/// block's features, one sample per column) and `c` `m x n` column-major (`c[col * m + row]`:
/// a block's values, text-minor). Entry `(row, col)` is the chain of the module documentation
/// over `a[row * lda + j] * b[col * ldb + j]`, `j = 0..k`. Panics if a slice is too short.
#[allow(clippy::too_many_arguments)]
pub fn product(m: usize, k: usize, n: usize, a: &[f64], lda: usize, b: &[f64], ldb: usize, c: &mut [f64]) {
    assert!(k <= lda && k <= ldb, "product: the depth {k} exceeds a leading dimension ({lda}, {ldb})");
    assert!(m == 0 || a.len() >= (m - 1) * lda + k, "product: `a` holds {} numbers, {m} rows need more", a.len());
    assert!(n == 0 || b.len() >= (n - 1) * ldb + k, "product: `b` holds {} numbers, {n} columns need more", b.len());
    assert!(c.len() >= m * n, "product: `c` holds {} numbers, {m} x {n} needed", c.len());
    let c = &mut c[..m * n];
    if k == 0 {
        c.fill(0.0);
        return;
    }
    if m == 0 || n == 0 {
        return;
    }
    let operands = Operands { m, k, n, a, lda, b, ldb };
    PACKED.with_borrow_mut(|packed| product_widest(&operands, c, packed));
}

/// `a b` for nalgebra matrices (column-major), by [`product`]: the same bits on every machine,
/// where nalgebra's `*` hands anything above 5 x 5 to `matrixmultiply`. Allocates the result
/// and a transposed copy of `a` (for the metrics, not the round's inner loops).
pub fn matmul(a: &DMatrix<f64>, b: &DMatrix<f64>) -> DMatrix<f64> {
    assert_eq!(a.ncols(), b.nrows(), "matmul: {} x {} times {} x {}", a.nrows(), a.ncols(), b.nrows(), b.ncols());
    let (m, k, n) = (a.nrows(), a.ncols(), b.ncols());
    // Column `r` of `a^T` (column-major) is row `r` of `a`: the rows `product` reads.
    let rows = a.transpose();
    let mut c = DMatrix::zeros(m, n);
    product(m, k, n, rows.as_slice(), k, b.as_slice(), k, c.as_mut_slice());
    c
}

/// The operands of one [`product`].
struct Operands<'a> {
    m: usize,
    k: usize,
    n: usize,
    a: &'a [f64],
    lda: usize,
    b: &'a [f64],
    ldb: usize,
}

/// [`blocked`] with the register tile and the widest vectors of the CPU.
fn product_widest(operands: &Operands<'_>, c: &mut [f64], packed: &mut Vec<f64>) {
    crate::linalg::widest_vectors!(
        [blocked::<16, 12>, blocked::<8, 6>, blocked::<8, 6>] => (),
        operands: &Operands<'_>,
        c: &mut [f64],
        packed: &mut Vec<f64>,
    );
}

/// The loop nest of the module documentation, with an `MR x NR` register tile.
#[inline(always)]
fn blocked<const MR: usize, const NR: usize>(operands: &Operands<'_>, c: &mut [f64], packed: &mut Vec<f64>) {
    let &Operands { m, k, n, a, lda, b, ldb } = operands;
    let (row_panels, col_panels) = (MC.min(m).div_ceil(MR), n.div_ceil(NR));
    let (a_size, b_size) = (row_panels * MR * KC, col_panels * NR * KC);
    if packed.len() < a_size + b_size {
        packed.resize(a_size + b_size, 0.0);
    }
    let (a_packed, b_packed) = packed.split_at_mut(a_size);
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        let first = k0 == 0;
        // The chunk of `b`: panel `q` holds columns `q NR ..`, row `j` of the panel at `j NR`.
        for (q, panel) in b_packed.chunks_exact_mut(NR * KC).take(col_panels).enumerate() {
            pack::<NR>(&mut panel[..kc * NR], b, ldb, q * NR, n, k0);
        }
        for m0 in (0..m).step_by(MC) {
            let mc = MC.min(m - m0);
            let panels = mc.div_ceil(MR);
            for (p, panel) in a_packed.chunks_exact_mut(MR * KC).take(panels).enumerate() {
                pack::<MR>(&mut panel[..kc * MR], a, lda, m0 + p * MR, m0 + mc, k0);
            }
            for (q, b_panel) in b_packed.chunks_exact(NR * KC).take(col_panels).enumerate() {
                let (col0, cols) = (q * NR, NR.min(n - q * NR));
                for (p, a_panel) in a_packed.chunks_exact(MR * KC).take(panels).enumerate() {
                    let (row0, rows) = (m0 + p * MR, MR.min(mc - p * MR));
                    let mut tile = [[0.0f64; MR]; NR];
                    // Whole columns of `MR` (the usual case) move as fixed-size arrays, in
                    // registers; a short edge as a slice.
                    if !first {
                        for (cc, t) in tile.iter_mut().enumerate().take(cols) {
                            let start = (col0 + cc) * m + row0;
                            if rows == MR {
                                *t = c[start..start + MR].try_into().expect("MR numbers");
                            } else {
                                t[..rows].copy_from_slice(&c[start..start + rows]);
                            }
                        }
                    }
                    micro_kernel::<MR, NR>(&a_panel[..kc * MR], &b_panel[..kc * NR], &mut tile);
                    for (cc, t) in tile.iter().enumerate().take(cols) {
                        let start = (col0 + cc) * m + row0;
                        if rows == MR {
                            let column: &mut [f64; MR] = (&mut c[start..start + MR]).try_into().expect("MR numbers");
                            *column = *t;
                        } else {
                            c[start..start + rows].copy_from_slice(&t[..rows]);
                        }
                    }
                }
            }
        }
    }
}

/// Packs lines `first..first + W` of `source` (each `ld` apart; those at or past `end` as zeros),
/// from depth `k0` on, into `panel`, `W` numbers per depth: `panel[j W + w] = source[(first + w) ld + k0 + j]`.
#[inline(always)]
fn pack<const W: usize>(panel: &mut [f64], source: &[f64], ld: usize, first: usize, end: usize, k0: usize) {
    let kc = panel.len() / W;
    let lines: [&[f64]; W] = std::array::from_fn(|w| {
        let line = first + w;
        if line < end { &source[line * ld + k0..line * ld + k0 + kc] } else { &[] }
    });
    for (j, out) in panel.chunks_exact_mut(W).enumerate() {
        for (o, line) in out.iter_mut().zip(&lines) {
            *o = line.get(j).copied().unwrap_or(0.0);
        }
    }
}

/// Continues the `NR x MR` chains of `tile` over one chunk: `a` is `kc` rows of `MR`, `b` `kc`
/// rows of `NR`.
#[inline(always)]
fn micro_kernel<const MR: usize, const NR: usize>(a: &[f64], b: &[f64], tile: &mut [[f64; MR]; NR]) {
    let mut acc = *tile;
    let (a, _) = a.as_chunks::<MR>();
    let (b, _) = b.as_chunks::<NR>();
    for (ar, br) in a.iter().zip(b) {
        for (col, &bv) in acc.iter_mut().zip(br) {
            for (x, &av) in col.iter_mut().zip(ar) {
                *x = av.mul_add(bv, *x);
            }
        }
    }
    *tile = acc;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition: each entry's chain, one multiply-add at a time.
    fn chains(m: usize, k: usize, n: usize, a: &[f64], lda: usize, b: &[f64], ldb: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for col in 0..n {
            for row in 0..m {
                let mut s = 0.0f64;
                for j in 0..k {
                    s = a[row * lda + j].mul_add(b[col * ldb + j], s);
                }
                c[col * m + row] = s;
            }
        }
        c
    }

    /// Numbers spread over many binades with both signs, so that any change of a chain's
    /// operations or order shows in the last bits.
    fn numbers(len: usize, seed: u64) -> Vec<f64> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let mantissa = (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                mantissa * 2f64.powi((x % 40) as i32 - 20)
            })
            .collect()
    }

    #[test]
    fn every_tile_and_the_dispatched_product_compute_the_chains() {
        // Sizes off every tile multiple, depths across one and several chunks, rows across
        // several row blocks, and leading dimensions wider than the depth.
        for (m, k, n) in [(1, 1, 1), (7, 5, 3), (37, 300, 29), (130, 257, 26), (256, 560, 20), (3, 600, 1)] {
            let (lda, ldb) = (k + 3, k + 1);
            let a = numbers(m * lda, m as u64);
            let b = numbers(n * ldb, k as u64);
            let want = chains(m, k, n, &a, lda, &b, ldb);
            let mut got = vec![f64::NAN; m * n];
            product(m, k, n, &a, lda, &b, ldb, &mut got);
            assert!(want.iter().zip(&got).all(|(w, g)| w.to_bits() == g.to_bits()), "dispatched, {m} x {k} x {n}");
            let operands = Operands { m, k, n, a: &a, lda, b: &b, ldb };
            for tile in
                [blocked::<16, 12> as fn(&Operands<'_>, &mut [f64], &mut Vec<f64>), blocked::<8, 6>, blocked::<4, 4>, blocked::<1, 1>]
            {
                let mut got = vec![f64::NAN; m * n];
                tile(&operands, &mut got, &mut Vec::new());
                assert!(want.iter().zip(&got).all(|(w, g)| w.to_bits() == g.to_bits()), "a tile, {m} x {k} x {n}");
            }
        }
    }

    #[test]
    fn matmul_is_the_product_of_nalgebra_matrices() {
        let a = DMatrix::from_fn(7, 9, |r, c| (r as f64 - 2.5) * 0.3 + c as f64 * 0.11);
        let b = DMatrix::from_fn(9, 6, |r, c| (c as f64 - 1.0) * 0.7 - r as f64 * 0.05);
        let c = matmul(&a, &b);
        assert_eq!(c.shape(), (7, 6));
        for r in 0..7 {
            for col in 0..6 {
                let want = (0..9).fold(0.0f64, |s, j| a[(r, j)].mul_add(b[(j, col)], s));
                assert_eq!(c[(r, col)].to_bits(), want.to_bits());
            }
        }
    }

    #[test]
    fn an_empty_depth_gives_zeros_and_empty_sides_nothing() {
        let mut c = vec![1.0; 6];
        product(2, 0, 3, &[], 0, &[], 0, &mut c);
        assert_eq!(c, vec![0.0; 6]);
        product(0, 4, 3, &[], 4, &[0.0; 12], 4, &mut c);
        product(2, 4, 0, &[0.0; 8], 4, &[], 4, &mut c);
    }
}
