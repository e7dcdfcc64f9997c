//! The posterior's own `exp` (`coevo::models::exp`) against a double-double reference, over
//! millions of points of its whole range with the edges (tiny arguments, the switch points of
//! its range reduction, the subnormal results, underflow and overflow): its error in ulps, and
//! the slice form's bits against the scalar form's.
//!
//! The reference evaluates `e^x = 2^k e^r` with `r = x - k ln 2` in double-double arithmetic
//! (`ln 2` in three pieces), `e^r` as the Taylor series of `r / 2^10` to degree 10 squared ten
//! times: about 94 correct bits, checked against values computed to 80 digits (Python's
//! `decimal`). An error of 1e-28 relative in the reference moves a measured error by 1e-12 ulp.

use coevo::models::exp::{exp, exp_in_place};
use coevo::rng::entity_stream;
use rand::RngExt;

/// A double-double `hi + lo`, `|lo| <= ulp(hi) / 2`.
#[derive(Clone, Copy, Debug)]
struct Dd(f64, f64);

fn two_sum(a: f64, b: f64) -> Dd {
    let s = a + b;
    let v = s - a;
    Dd(s, (a - (s - v)) + (b - v))
}

fn fast_two_sum(a: f64, b: f64) -> Dd {
    let s = a + b;
    Dd(s, b - (s - a))
}

fn add(x: Dd, y: Dd) -> Dd {
    let s = two_sum(x.0, y.0);
    let t = two_sum(x.1, y.1);
    let u = fast_two_sum(s.0, s.1 + t.0);
    fast_two_sum(u.0, u.1 + t.1)
}

/// `a b` exactly (`mul_add` is the correctly rounded fused operation on every platform).
fn two_prod(a: f64, b: f64) -> Dd {
    let p = a * b;
    Dd(p, a.mul_add(b, -p))
}

fn mul(x: Dd, y: Dd) -> Dd {
    let p = two_prod(x.0, y.0);
    fast_two_sum(p.0, p.1 + (x.0 * y.1 + x.1 * y.0))
}

fn div_f64(x: Dd, b: f64) -> Dd {
    let q = x.0 / b;
    let p = two_prod(q, b);
    let r = ((x.0 - p.0) - p.1) + x.1;
    fast_two_sum(q, r / b)
}

/// `ln 2` in three pieces (each the rounded remainder of the ones before).
const LN2: [f64; 3] = [std::f64::consts::LN_2, 2.319_046_813_846_299_6e-17, 5.707_708_438_416_212e-34];

/// `e^x` as `(m, k)` with `e^x = m 2^k`, `m` in about `[0.7, 1.42]` to about 94 bits.
fn reference(x: f64) -> (Dd, i32) {
    let k = (x / LN2[0]).round_ties_even();
    let mut r = Dd(x, 0.0);
    for l in LN2 {
        let p = two_prod(k, l);
        r = add(r, Dd(-p.0, -p.1));
    }
    let s = Dd(r.0 / 1024.0, r.1 / 1024.0);
    let mut inverse_factorials = [Dd(1.0, 0.0); 11];
    for n in 1..11 {
        inverse_factorials[n] = div_f64(inverse_factorials[n - 1], n as f64);
    }
    let mut e = inverse_factorials[10];
    for &c in inverse_factorials[..10].iter().rev() {
        e = add(mul(e, s), c);
    }
    for _ in 0..10 {
        e = mul(e, e);
    }
    (e, k as i32)
}

/// `v 2^n` by steps that stay exact (powers of two no larger than `2^600` at a time).
fn scale(mut v: f64, mut n: i32) -> f64 {
    while n != 0 {
        let step = n.clamp(-600, 600);
        v *= 2f64.powi(step);
        n -= step;
    }
    v
}

/// `|y - e^x|` in ulps of `e^x` (the spacing of doubles at `e^x`; `2^-1074` below the normal
/// range), for finite `e^x`.
fn ulps(x: f64, y: f64) -> f64 {
    let (m, k) = reference(x);
    // The binade of m + lo: one lower when m is a power of two and lo pulls below it.
    let mut binade = ((m.0.to_bits() >> 52) & 0x7ff) as i32 - 1023;
    if m.0.to_bits() & ((1 << 52) - 1) == 0 && m.1 < 0.0 {
        binade -= 1;
    }
    let ulp_exponent = (binade + k - 52).max(-1074);
    // In units of 2^k: y 2^-k is exact (a normal number near m), and so is y 2^-k - m.0.
    let y_scaled = scale(y, -k);
    ((y_scaled - m.0) - m.1).abs() / scale(1.0, ulp_exponent - k)
}

#[test]
fn the_reference_matches_values_to_80_digits() {
    // (x, k, hi, lo): e^x 2^-k = hi + lo for the double x nearest the literal, from Python's
    // decimal at 80 digits.
    let cases = [
        (-1.0, -1, 0.7357588823428847, -2.4857507345576725e-17),
        (-0.34, 0, 0.7117703227626097, 4.476156673124037e-17),
        (-20.5, -30, 1.3423414190329293, 6.923740553481272e-17),
        (-708.5, -1022, 0.9016025682298999, 4.157859568999687e-17),
        (-745.1, -1075, 1.0337770169807161, -3.2801478938254484e-17),
        (-0.000001, 0, 0.9999990000005, -1.586124802745164e-17),
        (0.3, 0, 1.3498588075760032, -9.447314673432387e-17),
        (700.25, 1010, 1.1869032857887347, 6.520785775599955e-17),
    ];
    for (x, k, hi, lo) in cases {
        let (m, km) = reference(x);
        assert_eq!(km, k, "x = {x}");
        let difference = add(m, Dd(-hi, -lo));
        // Double-double operations err by about 2^-104 relative; the ten squarings multiply that
        // by 2^10: 2^-94, 5e-29.
        assert!(difference.0.abs() < 1e-28 * hi, "x = {x}: reference off by {:e}", difference.0);
    }
}

/// The test points: uniform over the posterior's range `[-745.2, 0]`, the subnormal results,
/// tiny arguments of both signs, the switch points `(j + 1/2) ln 2` of the range reduction
/// (and their neighbouring doubles), and positive arguments up to the overflow threshold.
fn points() -> Vec<f64> {
    let mut rng = entity_stream(17, 0, "exp");
    let mut xs = Vec::with_capacity(4_000_000);
    xs.extend((0..2_000_000).map(|_| rng.random_range(-745.2..=0.0)));
    xs.extend((0..500_000).map(|_| rng.random_range(-745.2..-708.3)));
    xs.extend((0..500_000).map(|_| {
        let x = 10f64.powf(rng.random_range(-20.0..0.0));
        if rng.random_bool(0.5) { -x } else { x }
    }));
    for j in -1076..1025 {
        let edge = (j as f64 + 0.5) * LN2[0];
        let bits = edge.to_bits();
        xs.extend((0..64).map(|d| f64::from_bits(bits - 32 + d)));
    }
    xs.extend((0..500_000).map(|_| rng.random_range(0.0..709.7)));
    xs.retain(|&x| (-745.2..=709.7).contains(&x));
    xs
}

#[test]
fn error_is_below_one_ulp_over_millions_of_points() {
    let xs = points();
    assert!(xs.len() > 3_500_000);
    let (mut worst, mut worst_x, mut exact) = (0.0f64, 0.0, 0usize);
    let (mut worst_normal, mut worst_normal_x) = (0.0f64, 0.0);
    for &x in &xs {
        let e = ulps(x, exp(x));
        if e > worst {
            (worst, worst_x) = (e, x);
        }
        if x > -708.3 && e > worst_normal {
            (worst_normal, worst_normal_x) = (e, x);
        }
        exact += usize::from(e <= 0.5);
    }
    println!(
        "{} points: max error {worst:.4} ulp at x = {worst_x:e}, {worst_normal:.4} ulp in the normal range (x = {worst_normal_x:e}); {:.4}% correctly rounded",
        xs.len(),
        100.0 * exact as f64 / xs.len() as f64
    );
    assert!(worst < 1.0, "max error {worst} ulp at x = {worst_x:e}");
    // The bound of the module's documentation for normal results: the last addition's half ulp,
    // the tail's rounding (under 0.18 ulp), r's (under 0.08) and the two sums' (under 0.06).
    assert!(worst_normal < 0.82, "max error {worst_normal} ulp at x = {worst_normal_x:e} in the normal range");
}

#[test]
fn the_slice_form_gives_the_scalar_bits() {
    let mut xs = points();
    xs.extend([f64::NEG_INFINITY, f64::INFINITY, f64::NAN, -746.5, -1e300, 800.0, -0.0, 0.0]);
    let expected: Vec<f64> = xs.iter().map(|&x| exp(x)).collect();
    // Slices of every length from 1 to 37, so that vector bodies and scalar tails both meet
    // every kind of point.
    let (mut start, mut len) = (0, 1);
    while start < xs.len() {
        let end = (start + len).min(xs.len());
        exp_in_place(&mut xs[start..end]);
        start = end;
        len = len % 37 + 1;
    }
    for (i, (y, e)) in xs.iter().zip(&expected).enumerate() {
        assert!(y.to_bits() == e.to_bits() || (y.is_nan() && e.is_nan()), "point {i}: slice {y:e}, scalar {e:e}");
    }
}

#[test]
fn edges_of_the_range() {
    assert_eq!(exp(f64::NEG_INFINITY), 0.0);
    assert_eq!(exp(f64::INFINITY), f64::INFINITY);
    assert!(exp(f64::NAN).is_nan());
    assert_eq!(exp(0.0), 1.0);
    assert_eq!(exp(-0.0), 1.0);
    // e^x rounds to 0 below ln(2^-1075) = -745.13321910194122 and to 2^-1074 just above.
    assert_eq!(exp(-745.133_219_101_942), 0.0);
    assert_eq!(exp(-745.133_219_101_941), f64::from_bits(1));
    assert_eq!(exp(-745.2), 0.0);
    assert_eq!(exp(-1e308), 0.0);
    // ln(f64::MAX) = 709.782712893384: e^x is finite just below it and overflows above it.
    // e^709.7827128933839 = 1.797693134862068844e308 (80 digits), just below f64::MAX.
    assert_eq!(exp(709.782_712_893_383_9), 1.797_693_134_862_068_8e308);
    assert_eq!(exp(709.782_712_893_385), f64::INFINITY);
    // Below 2^-54 in magnitude e^x rounds to 1 (or to the double just below 1 for x < -2^-54).
    assert_eq!(exp(1e-300), 1.0);
    assert_eq!(exp(-1e-17), 1.0);
    assert_eq!(exp(-6e-17), 1.0 - f64::EPSILON / 2.0);
}
