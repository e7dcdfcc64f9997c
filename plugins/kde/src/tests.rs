//! Tests through the generated C table (in-process) with the host helpers: the KDE's sampling
//! moments, its round-to-round law for each bandwidth rule, exact checkpoints, the reservoir.

use super::*;
use coevo_plugin_api::host::{LoadedTable, PluginModel};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn table() -> LoadedTable {
    // SAFETY: the table is a static of this crate.
    unsafe { LoadedTable::from_raw(coevo_plugin_entry(), "coevo-kde (in-process)") }.unwrap()
}

fn model(params: &str, k: usize, policy: DataPolicy) -> PluginModel {
    table().create_by_name("kde", params, k, policy).unwrap()
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Mean and standard error of the mean of `xs` (sample standard deviation / sqrt(n)).
fn mean_se(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

#[test]
fn bad_params_are_rejected_naming_the_field() {
    let t = table();
    let err = |p: &str| t.create_by_name("kde", p, 3, DataPolicy::Replace).unwrap_err().to_string();
    assert!(err(r#"{"bandwidth": "normal"}"#).contains("bandwidth must be \"scott\", \"silverman\" or a fixed h > 0"));
    assert!(err(r#"{"bandwidth": -1}"#).contains("a fixed h must be finite and > 0"));
    assert!(err(r#"{"capacity": 1}"#).contains("capacity must be >= 2"));
    assert!(err(r#"{"initial": {"components": 0}}"#).contains("initial.components must be >= 1"));
    assert!(err(r#"{"bandwith": 1}"#).contains("unknown field `bandwith`"));
}

#[test]
fn sampling_variance_is_the_points_variance_plus_h_squared_per_coordinate() {
    // Fit on 50 points, then draw N = 400 000 samples at T = 1 and T = 2: each coordinate's
    // variance must be S_cc + T h^2 (S with divisor n). The standard error of a sample variance
    // is sqrt((m4 - v^2) / N), with m4 the sample's fourth central moment; 5 standard errors
    // (4 checks, false alarm below 3e-6). The means must be the points' means (se sqrt(v / N)).
    let mut m = model(r#"{"initial": {"means": [[1, -1]], "components": 3}, "bandwidth": "silverman"}"#, 1, DataPolicy::Replace);
    let points = m.sample(&[50], 1.0, &mut rng(1)).unwrap();
    m.fit(&[50], &points, &mut rng(2)).unwrap();
    let (mean, cov) = point_moments(&points, 2);
    let h = m.metrics().unwrap()[2];
    let b2 = Bandwidth::Silverman.factor_sq(50, 2).unwrap();
    assert!((h * h - b2 * trace(&cov, 2) / 2.0).abs() < 1e-15, "Silverman's h");
    let n = 400_000u64;
    for t in [1.0, 2.0] {
        let y = m.sample(&[n], t, &mut rng(3)).unwrap();
        for c in 0..2 {
            let xs: Vec<f64> = y.iter().skip(c).step_by(2).copied().collect();
            let (mu, _) = mean_se(&xs);
            let v = xs.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / n as f64;
            let m4 = xs.iter().map(|x| (x - mu).powi(4)).sum::<f64>() / n as f64;
            let expected = cov[c * 2 + c] + t * h * h;
            let se = ((m4 - v * v) / n as f64).sqrt();
            assert!((v - expected).abs() < 5.0 * se, "T = {t}, coordinate {c}: variance {v} vs {expected} (se {se})");
            assert!((mu - mean[c]).abs() < 5.0 * (v / n as f64).sqrt(), "coordinate {c}: mean {mu} vs {}", mean[c]);
        }
    }
}

/// Mean `diversity` (`tr S + d h^2`) over `loops` independent loops of `rounds` refits on `n`
/// of the model's own samples, per round, with its standard error.
fn loop_diversity(params: &str, n: u64, rounds: usize, loops: usize, seed: u64) -> Vec<(f64, f64)> {
    let mut per_round = vec![Vec::with_capacity(loops); rounds];
    let mut host = rng(seed);
    for _ in 0..loops {
        let mut m = model(params, 1, DataPolicy::Replace);
        for values in per_round.iter_mut() {
            let y = m.sample(&[n], 1.0, &mut host).unwrap();
            m.fit(&[n], &y, &mut host).unwrap();
            values.push(m.metrics().unwrap()[0]);
        }
    }
    per_round.iter().map(|v| mean_se(v)).collect()
}

#[test]
fn trace_follows_the_resample_plus_noise_law_for_each_bandwidth_rule() {
    // The law (README): E[tr S' | S] = (1 - 1/n)(tr S + d h^2) for a refit on n samples of the
    // KDE. Round 1 refits on draws of the initial mixture (total variance D0): E tr S_1 =
    // (1 - 1/n) D0. Then, with a rule (d h^2 = b_n^2 tr S), E D_t = (1 + b_n^2) E tr S_t =
    // ((1 - 1/n)(1 + b_n^2))^t D0; with a fixed h, E tr S_{t+1} = (1 - 1/n)(E tr S_t + d h^2)
    // and D_t = tr S_t + d h^2. Checked on 3000 loops of 6 rounds with n = 10 at 4.5 standard
    // errors of the loop mean (18 checks: false alarm below 1.5e-4).
    let (n, rounds, loops, d) = (10u64, 6, 3000, 2.0);
    let initial = r#""initial": {"means": [[0, 0]], "components": 3, "radius": 0.25, "variance": 0.01}"#;
    // Three equally weighted offsets on a circle of radius r: D0 = d (0.01 + r^2 / 2).
    let d0 = d * (0.01 + 0.25f64.powi(2) / 2.0);
    let shrink = 1.0 - 1.0 / n as f64;
    for (rule, json) in [(Bandwidth::Scott, r#""scott""#), (Bandwidth::Silverman, r#""silverman""#), (Bandwidth::Fixed(0.05), "0.05")] {
        let got = loop_diversity(&format!("{{{initial}, \"bandwidth\": {json}}}"), n, rounds, loops, 7);
        let mut tr_s = shrink * d0;
        for (t, (mean, se)) in got.into_iter().enumerate() {
            let law = match rule.factor_sq(n as usize, 2) {
                Some(b2) => (shrink * (1.0 + b2)).powi(t as i32 + 1) * d0,
                None => {
                    let h_sq = 0.05f64 * 0.05;
                    let dt = tr_s + d * h_sq;
                    tr_s = shrink * dt;
                    dt
                }
            };
            assert!((mean - law).abs() < 4.5 * se, "{rule:?} round {}: mean diversity {mean} vs law {law} (se {se})", t + 1);
        }
    }
}

#[test]
fn log_likelihood_is_the_kernel_density() {
    let mut m = model(r#"{"initial": {"means": [[0, 0]], "components": 1}, "bandwidth": 0.3}"#, 1, DataPolicy::Replace);
    let points = [0.0, 0.0, 1.0, 0.5, -0.5, 2.0];
    m.fit(&[3], &points, &mut rng(1)).unwrap();
    let y = [0.2, 0.4];
    let ll = m.log_likelihood(&y).unwrap()[0];
    let h2: f64 = 0.09;
    let density: f64 = points
        .chunks(2)
        .map(|x| (-((y[0] - x[0]).powi(2) + (y[1] - x[1]).powi(2)) / (2.0 * h2)).exp() / (std::f64::consts::TAU * h2))
        .sum::<f64>()
        / 3.0;
    assert!((ll - density.ln()).abs() < 1e-13, "{ll} vs {}", density.ln());
    // Far away the density underflows but its logarithm stays finite.
    assert!(m.log_likelihood(&[1e3, 1e3]).unwrap()[0].is_finite());
}

#[test]
fn coinciding_points_get_the_floor_bandwidth_and_are_counted() {
    let mut m = model(r#"{"initial": {"means": [[0, 0]], "components": 1, "variance": 0.5}}"#, 1, DataPolicy::Replace);
    m.fit(&[4], &[0.3; 8], &mut rng(1)).unwrap();
    let metrics = m.metrics().unwrap();
    assert_eq!(metrics[5], 1.0, "regularized");
    assert!((metrics[2] - (1e-12f64 * 0.5).sqrt()).abs() < 1e-20, "h at the floor: {}", metrics[2]);
}

#[test]
fn accumulate_keeps_a_bounded_uniform_reservoir() {
    // capacity 50, 10 refits of 20 samples: 200 seen, 50 kept. The reservoir is a uniform
    // sample of all 200: the fraction of kept points from the first refit is hypergeometric
    // with mean 1/10; over 400 models its mean is within 5 standard errors of 0.1 (the
    // hypergeometric variance of one model's fraction is (1/10)(9/10)(150/199)/50).
    let params = r#"{"initial": {"means": [[0, 0]], "components": 1}, "capacity": 50}"#;
    let mut fractions = Vec::new();
    let mut host = rng(5);
    for _ in 0..400 {
        let mut m = model(params, 1, DataPolicy::Accumulate { initial: 0 });
        // The first refit's samples are tagged by a first coordinate of 100 + j.
        let first: Vec<f64> = (0..20).flat_map(|j| [100.0 + j as f64, 0.0]).collect();
        m.fit(&[20], &first, &mut host).unwrap();
        for _ in 1..10 {
            let y = m.sample(&[20], 1.0, &mut host).unwrap().iter().map(|v| v * 1e-3).collect::<Vec<_>>();
            m.fit(&[20], &y, &mut host).unwrap();
        }
        let p = m.get_params().unwrap();
        let n = p[4 + Mixture::saved_len(1, 2) + 3] as usize;
        assert_eq!(n, 50, "the reservoir holds capacity points");
        let points = &p[4 + Mixture::saved_len(1, 2) + 4..];
        fractions.push(points.chunks(2).filter(|x| x[0] >= 99.0).count() as f64 / 50.0);
    }
    let (mean, _) = mean_se(&fractions);
    let se = (0.1 * 0.9 * (150.0 / 199.0) / 50.0 / 400.0f64).sqrt();
    assert!((mean - 0.1).abs() < 5.0 * se, "first-refit fraction {mean} (se {se})");
}

#[test]
fn checkpoints_restore_the_model_exactly() {
    for policy in [DataPolicy::Replace, DataPolicy::Accumulate { initial: 0 }] {
        let params = r#"{"capacity": 30}"#;
        let mut m = model(params, 3, policy);
        for s in 0..3 {
            let y = m.sample(&[40, 25, 1], 1.0, &mut rng(s)).unwrap();
            m.fit(&[40, 25, 1], &y, &mut rng(100 + s)).unwrap();
        }
        m.add_text().unwrap();
        let saved = m.get_params().unwrap();
        let mut restored = model(params, 3, policy);
        restored.set_params(&saved).unwrap();
        assert_eq!(restored.num_texts(), 4);
        assert_eq!(restored.get_params().unwrap(), saved);
        assert_eq!(restored.metrics().unwrap(), m.metrics().unwrap());
        let counts = [30, 30, 30, 30];
        let (ya, yb) = (m.sample(&counts, 0.7, &mut rng(9)).unwrap(), restored.sample(&counts, 0.7, &mut rng(9)).unwrap());
        assert_eq!(ya, yb);
        assert_eq!(m.log_likelihood(&ya).unwrap(), restored.log_likelihood(&ya).unwrap());
        m.fit(&counts, &ya, &mut rng(10)).unwrap();
        restored.fit(&counts, &ya, &mut rng(10)).unwrap();
        assert_eq!(m.get_params().unwrap(), restored.get_params().unwrap(), "{policy:?}: the next fit agrees bit for bit");
        let before = restored.get_params().unwrap();
        assert!(restored.set_params(&saved[..saved.len() - 1]).is_err());
        assert_eq!(restored.get_params().unwrap(), before);
    }
}
