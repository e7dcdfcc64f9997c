//! Diversity of a text model `p` (docs/model.md section 7).

/// Probabilities above this count as alive in [`support`] and [`spread`].
pub const SUPPORT_EPSILON: f64 = 1e-12;

/// Gini-Simpson diversity `H(p) = 1 - sum p_i^2`: the probability that two draws differ.
pub fn gini_simpson(p: &[f64]) -> f64 {
    1.0 - p.iter().map(|x| x * x).sum::<f64>()
}

/// Shannon entropy in nats (`0 log 0 = 0`).
pub fn shannon_entropy(p: &[f64]) -> f64 {
    -p.iter().filter(|&&x| x > 0.0).map(|x| x * x.ln()).sum::<f64>()
}

/// Effective number of texts `exp(entropy)`.
pub fn effective_texts(p: &[f64]) -> f64 {
    shannon_entropy(p).exp()
}

/// Number of texts with `p_i > 1e-12`.
pub fn support(p: &[f64]) -> usize {
    p.iter().filter(|&&x| x > SUPPORT_EPSILON).count()
}

/// Largest probability.
pub fn max_p(p: &[f64]) -> f64 {
    p.iter().copied().fold(0.0, f64::max)
}

/// `max - min` of `p` over its support: Marchi et al.'s Lyapunov function, which goes to zero
/// when the surviving texts become uniform.
pub fn spread(p: &[f64]) -> f64 {
    let alive = p.iter().copied().filter(|&x| x > SUPPORT_EPSILON);
    let (lo, hi) = alive.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(x), hi.max(x)));
    if hi >= lo { hi - lo } else { 0.0 }
}

/// Total variation distance `(1/2) sum |p_i - q_i|`; the shorter vector is padded with zeros
/// (a text appended by corpus injection has initial mass zero).
pub fn total_variation(p: &[f64], q: &[f64]) -> f64 {
    let n = p.len().max(q.len());
    0.5 * (0..n).map(|i| (p.get(i).unwrap_or(&0.0) - q.get(i).unwrap_or(&0.0)).abs()).sum::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_and_point_mass() {
        let u = [0.25; 4];
        assert!((gini_simpson(&u) - 0.75).abs() < 1e-15);
        assert!((effective_texts(&u) - 4.0).abs() < 1e-12);
        assert_eq!(support(&u), 4);
        assert_eq!(spread(&u), 0.0);
        let point = [0.0, 1.0, 0.0];
        assert_eq!(gini_simpson(&point), 0.0);
        assert_eq!(shannon_entropy(&point), 0.0);
        assert_eq!(support(&point), 1);
        assert_eq!(max_p(&point), 1.0);
        assert!((total_variation(&[1.0 / 3.0; 3], &point) - 2.0 / 3.0).abs() < 1e-15);
        assert!((spread(&[0.5, 0.2, 0.3, 0.0]) - 0.3).abs() < 1e-15);
    }
}
