//! Coupling between a text model and a conditional model (docs/model.md section 7).

/// `sum_i p_i x_i`: the p-weighted mean of a per-text quantity (e.g. the image trace).
pub fn weighted_mean(p: &[f64], x: &[f64]) -> f64 {
    p.iter().zip(x).map(|(p, x)| p * x).sum()
}

/// Matthew index: Spearman rank correlation over texts between `p_i` and a per-text diversity
/// (`trace(Sigma_i)`). Positive when dominant texts keep their diversity and rare ones lose it
/// first. `NaN` when either side is constant (no ranking to correlate).
pub fn matthew_index(p: &[f64], diversity: &[f64]) -> f64 {
    spearman(p, diversity)
}

/// Spearman rank correlation with average ranks for ties.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&ranks(x), &ranks(y))
}

fn ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && x[order[end]] == x[order[start]] {
            end += 1;
        }
        let average = (start + end - 1) as f64 / 2.0 + 1.0;
        for &i in &order[start..end] {
            r[i] = average;
        }
        start = end;
    }
    r
}

fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 { f64::NAN } else { sxy / (sxx * syy).sqrt() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_of_monotone_and_reversed_and_ties() {
        assert!((spearman(&[0.1, 0.5, 0.2], &[1.0, 30.0, 2.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[0.1, 0.5, 0.2], &[3.0, 1.0, 2.0]) + 1.0).abs() < 1e-12);
        assert!(spearman(&[0.2; 3], &[1.0, 2.0, 3.0]).is_nan());
        assert_eq!(ranks(&[2.0, 1.0, 2.0]), vec![2.5, 1.0, 2.5]);
    }
}
