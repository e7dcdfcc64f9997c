//! The exponential of the caption posterior (docs/model.md section 3): `exp` written out in
//! plain IEEE-754 operations, so that it gives the same bits on every machine and vectorises
//! over slices.
//!
//! The platform's `exp` (glibc, musl, macOS's libm) is a scalar call per value whose last bit
//! may differ from one C library to another, which would break "same scenario and seed,
//! identical output on any machine" at the first posterior weight. This one uses only
//! additions, multiplications, comparisons and bit operations, each correctly rounded or exact
//! by the standard, and never a fused multiply-add (Rust does not contract `a * b + c`), so its
//! result is fixed by the code alone. It has no table (a gather would stop vectorisation):
//!
//! 1. `x = k ln 2 + r` with `k = round(x / ln 2)` (rounded by adding `1.5 * 2^52`, which also
//!    leaves `k` in the low bits of the sum) and `|r| <= ln 2 / 2`; `ln 2` is split in two
//!    (Cody and Waite) so that `x - k ln2_hi` is exact and `r = r_hi + r_lo` carries
//!    `ln 2`'s remaining bits;
//! 2. `exp(r) = 1 + r + r^2 P(r)`, `P` the Taylor polynomial of degree 11 (terms to `r^13`,
//!    truncation below `5e-18`), the leading `1 + r_hi` summed with its exact rounding error;
//! 3. `2^k` applied as `2^k1 2^k2` with `k1 + k2 = k`, both powers built from their exponent
//!    bits and normal: the first product is exact and the second rounds once, so results in
//!    the subnormal range (`x` below -708.4) are rounded to the subnormal grid, and overflow
//!    comes out as `inf` without a branch; arguments below -745.14 give 0 by a select.
//!
//! Error, in ulps of the result: at most the last addition's half ulp, plus the rounding of
//! the `r^2 P(r)` tail (below 0.054 where the result is below 1, about three roundings: under
//! 0.18 ulp), of `r` (under 0.08) and of the two small sums (under 0.06): below 0.82 ulp for
//! normal results; subnormal results add their own rounding to the grid (below 0.91 ulp).
//! `tests/exp.rs` measures 0.72 and 0.80 against a double-double reference over 3.6 million
//! points, 98.4% of them correctly rounded.
//!
//! `exp(-inf) = 0`, `exp(inf) = inf`, NaN gives NaN. The slice form and the scalar form run
//! the same operations, so they agree bit for bit.

/// `ln 2` to 32 significant bits: `k LN2_HI` is exact for `|k| < 2^21`.
const LN2_HI: f64 = f64::from_bits(0x3FE6_2E42_FEE0_0000);
/// `ln 2 - LN2_HI`, rounded.
const LN2_LO: f64 = f64::from_bits(0x3DEA_39EF_3579_3C76);
/// `1.5 * 2^52`: adding it rounds to an integer (to nearest, ties to even) and leaves that
/// integer, in two's complement, in the low bits of the sum.
const SHIFT: f64 = 6_755_399_441_055_744.0;
/// Below this `exp` is 0 (`ln(2^-1075) = -745.1332`): such arguments are answered by a select
/// and enter the arithmetic as 0, because an underflowing product costs a microcode assist of
/// about a hundred cycles on x86 (rows of the posterior are mostly such entries once
/// conditionals separate).
const ZERO_BELOW: f64 = -745.14;
/// Above this `exp` overflows (`ln(f64::MAX) = 709.78`).
const MAX_ARG: f64 = 710.0;
/// `1 / n!` for `n = 2..=13`, rounded: the coefficients of `exp(r) - 1 - r` over `r^2`.
const TAYLOR: [f64; 12] = [
    0.5,
    0.166_666_666_666_666_66,
    0.041_666_666_666_666_664,
    0.008_333_333_333_333_333,
    0.001_388_888_888_888_889,
    0.000_198_412_698_412_698_4,
    2.480_158_730_158_73e-5,
    2.755_731_922_398_589_3e-6,
    2.755_731_922_398_589e-7,
    2.505_210_838_544_172e-8,
    2.087_675_698_786_81e-9,
    1.605_904_383_682_161_3e-10,
];

/// `2^k` for an integer `k` in `[-1022, 1023]` held as `SHIFT + k`: the biased exponent
/// `k + 1023` shifted into the exponent field (the shift drops `SHIFT`'s own bits).
#[inline(always)]
fn power_of_two(shifted: f64) -> f64 {
    f64::from_bits(shifted.to_bits().wrapping_add(1023) << 52)
}

/// `e^x`, deterministic to the bit on every machine (see the module documentation).
#[inline(always)]
pub fn exp(x: f64) -> f64 {
    // NaN fails both comparisons and passes through to the result.
    let zero = x < ZERO_BELOW;
    let x = if zero {
        0.0
    } else if x > MAX_ARG {
        MAX_ARG
    } else {
        x
    };
    let shifted = x * std::f64::consts::LOG2_E + SHIFT;
    let k = shifted - SHIFT;
    // Exact: `k LN2_HI` has at most 43 significant bits, and it is within a factor two of `x`
    // whenever `k != 0` (Sterbenz).
    let r_hi = x - k * LN2_HI;
    let r_lo = k * -LN2_LO;
    let r = r_hi + r_lo;
    // `P(r)` by Estrin's scheme (pairs, then pairs of pairs): a dependency chain of depth 5
    // instead of Horner's 11, which is what bounds the speed on short rows.
    let c = TAYLOR;
    let (r2, r4) = (r * r, r * r * (r * r));
    let pairs = [c[0] + c[1] * r, c[2] + c[3] * r, c[4] + c[5] * r, c[6] + c[7] * r, c[8] + c[9] * r, c[10] + c[11] * r];
    let quads = [pairs[0] + pairs[1] * r2, pairs[2] + pairs[3] * r2, pairs[4] + pairs[5] * r2];
    let p = (quads[0] + quads[1] * r4) + quads[2] * (r4 * r4);
    let tail = r2 * p;
    // `1 + r_hi` and its rounding error, exactly (Fast2Sum: |r_hi| < 1).
    let head = 1.0 + r_hi;
    let head_error = r_hi - (head - 1.0);
    let e_r = head + (head_error + (r_lo + tail));
    // `2^k = 2^k1 2^k2`, `k1 = round(k / 2)`: `k` lies in [-1075, 1024], so both halves lie
    // in [-538, 512] and both powers are normal.
    let shifted_half = k * 0.5 + SHIFT;
    let k2 = k - (shifted_half - SHIFT);
    let y = (e_r * power_of_two(shifted_half)) * power_of_two(k2 + SHIFT);
    if zero { 0.0 } else { y }
}

/// `x <- e^x` for every value of `xs`, bit for bit [`exp`] of each (the same operations, run
/// on as many values at once as the CPU's vectors hold).
pub fn exp_in_place(xs: &mut [f64]) {
    crate::linalg::widest_vectors!(exp_loop, xs: &mut [f64]);
}

/// Values per step of [`exp_loop`]: one AVX2 vector, two SSE2 ones.
const LANES: usize = 4;

/// The loop of [`exp_in_place`], in steps of [`LANES`] values; the last few values are padded
/// to a full step, so that a short row (a handful of texts) does not pay the scalar form's
/// latency per value.
#[inline(always)]
fn exp_loop(xs: &mut [f64]) {
    let mut chunks = xs.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for x in chunk {
            *x = exp(*x);
        }
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let mut padded = [0.0; LANES];
        padded[..rest.len()].copy_from_slice(rest);
        for x in &mut padded {
            *x = exp(*x);
        }
        rest.copy_from_slice(&padded[..rest.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_values() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-0.0), 1.0);
        assert_eq!(exp(f64::NEG_INFINITY), 0.0);
        assert_eq!(exp(f64::INFINITY), f64::INFINITY);
        assert!(exp(f64::NAN).is_nan());
        assert_eq!(exp(-745.2), 0.0);
        // The smallest subnormal, 2^-1074: exp(-745.13) = 4.94e-324 rounds to it.
        assert_eq!(exp(-745.13), f64::from_bits(1));
        assert_eq!(exp(710.0), f64::INFINITY);
        assert!(exp(709.78).is_finite());
    }
}
