//! Tests through the generated C table (in-process) with the host helpers: what a plugin author
//! would reuse to check a mixture model (parameter recovery within standard errors, the M = 1
//! reduction to the built-in model, exact checkpoints, stated floors).

use super::*;
use coevo_plugin_api::host::{LoadedTable, PluginModel};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn table() -> LoadedTable {
    // SAFETY: the table is a static of this crate.
    unsafe { LoadedTable::from_raw(coevo_plugin_entry(), "coevo-mixture (in-process)") }.unwrap()
}

fn model(params: &str, k: usize, policy: DataPolicy) -> PluginModel {
    table().create_by_name("gaussian_mixture", params, k, policy).unwrap()
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Text `i`'s component `c` as `(weight, mu, Sigma)` from a checkpoint (layout in `get_params`).
fn component(params: &[f64], i: usize, c: usize) -> (f64, Vec<f64>, Vec<f64>) {
    let (d, m) = (params[2] as usize, params[3] as usize);
    let block = Mixture::saved_len(m, d);
    let at = 4 + i * (3 * block + 2) + c * (1 + d + d * d);
    (params[at], params[at + 1..at + 1 + d].to_vec(), params[at + 1 + d..at + 1 + d + d * d].to_vec())
}

#[test]
fn bad_params_are_rejected_naming_the_field() {
    let t = table();
    let err = |p: &str| t.create_by_name("gaussian_mixture", p, 3, DataPolicy::Replace).unwrap_err().to_string();
    assert!(err(r#"{"initial": {"components": 0}}"#).contains("initial.components must be >= 1"));
    assert!(err(r#"{"initial": {"variance": 0}}"#).contains("initial.variance must be finite and > 0"));
    assert!(err(r#"{"initial": {"weights": [1, 2]}}"#).contains("initial.weights must be 3"));
    assert!(err(r#"{"initial": {"means": [[0, 0]]}}"#).contains("initial.means has 1 rows but there are 3 texts"));
    assert!(err(r#"{"iterations": 0}"#).contains("iterations must be >= 1"));
    assert!(err(r#"{"weight_threshold": 1}"#).contains("weight_threshold must be in [0, 1)"));
    assert!(err(r#"{"initial": {"varaince": 1}}"#).contains("unknown field `varaince`"));
    let fresh = t.create_by_name("gaussian_mixture", "{}", 3, DataPolicy::Fresh { lambda: 0.5 }).unwrap_err().to_string();
    assert!(fresh.contains("not supported: coevo passes Replace or Accumulate"), "{fresh}");
}

#[test]
fn em_recovers_a_known_two_component_mixture_within_standard_errors() {
    // Truth: weights (0.3, 0.7), means (-1, 0) and (1.5, 0.5), covariances 0.2 I: the means
    // are 5.8 standard deviations apart, so the responsibilities are almost 0/1 and the MLE's
    // standard errors are those with known labels (the missing information is negligible):
    // weight sqrt(w (1 - w) / n), mean sqrt(v / (n w)) per coordinate, variance
    // v sqrt(2 / (n w)), covariance v / sqrt(n w). Every check is at 5 standard errors: 18
    // checks, so a correct EM fails with probability below 1e-5.
    let truth = r#"{"initial": {"means": [[0, 0]], "components": 2, "offsets": [[-1, 0], [1.5, 0.5]],
                   "weights": [0.3, 0.7], "variance": 0.2}}"#;
    let n = 40_000u64;
    let y = model(truth, 1, DataPolicy::Replace).sample(&[n], 1.0, &mut rng(1)).unwrap();
    // EM starts far from the truth: both components near the origin, variance 1, equal weights.
    let start = r#"{"initial": {"means": [[0, 0]], "components": 2, "offsets": [[-0.3, 0.1], [0.3, -0.1]], "variance": 1.0},
                   "iterations": 1000, "tolerance": 1e-12}"#;
    let mut m = model(start, 1, DataPolicy::Replace);
    m.fit(&[n], &y, &mut rng(2)).unwrap();
    let params = m.get_params().unwrap();
    let nf = n as f64;
    for (c, (w, mu, v)) in [(0.3, [-1.0, 0.0], 0.2), (0.7, [1.5, 0.5], 0.2)].into_iter().enumerate() {
        let (weight, mean, sigma) = component(&params, 0, c);
        let se_w = (w * (1.0 - w) / nf).sqrt();
        assert!((weight - w).abs() < 5.0 * se_w, "component {c}: weight {weight} vs {w} (se {se_w})");
        let nc = nf * w;
        for a in 0..2 {
            let se = (v / nc).sqrt();
            assert!((mean[a] - mu[a]).abs() < 5.0 * se, "component {c}: mean[{a}] {} vs {} (se {se})", mean[a], mu[a]);
            let se_v = v * (2.0 / nc).sqrt();
            assert!((sigma[a * 2 + a] - v).abs() < 5.0 * se_v, "component {c}: variance[{a}] {} vs {v}", sigma[a * 2 + a]);
        }
        assert!(sigma[1].abs() < 5.0 * v / nc.sqrt(), "component {c}: covariance {}", sigma[1]);
    }
    let metrics = m.metrics().unwrap();
    assert_eq!(metrics[2], 2.0, "both components above the weight threshold");
    assert!(metrics[4] >= 2.0, "EM took several steps from a poor start");
}

#[test]
fn one_component_em_is_the_maximum_likelihood_fit() {
    // With M = 1 every responsibility is 1, so one EM step gives the sample mean and the MLE
    // covariance (divisor n) whatever the warm start: exactly the built-in model's refit.
    let mut m = model(r#"{"initial": {"means": [[3, -1]], "components": 1, "variance": 0.5}}"#, 1, DataPolicy::Replace);
    let y = [0.1, 0.2, -0.4, 1.0, 2.0, 0.5, 0.3, -0.7];
    m.fit(&[4], &y, &mut rng(3)).unwrap();
    let (w, mu, sigma) = component(&m.get_params().unwrap(), 0, 0);
    let rows: Vec<&[f64]> = y.chunks(2).collect();
    let mean = [0, 1].map(|a| rows.iter().map(|r| r[a]).sum::<f64>() / 4.0);
    assert_eq!(w, 1.0);
    for a in 0..2 {
        assert!((mu[a] - mean[a]).abs() < 1e-14);
        for b in 0..2 {
            let mle = rows.iter().map(|r| (r[a] - mean[a]) * (r[b] - mean[b])).sum::<f64>() / 4.0;
            assert!((sigma[a * 2 + b] - mle).abs() < 1e-14, "Sigma[{a}{b}] {} vs {mle}", sigma[a * 2 + b]);
        }
    }
}

#[test]
fn one_component_mixture_follows_the_built_in_contraction_law() {
    // SPEC 3: with fixed(n) allocation and the MLE, E tr Sigma_t = ((n - 1)/n)^t tr Sigma_0.
    // R independent loops of a one-component mixture (n = 10 samples a round, d = 2,
    // Sigma_0 = 0.1 I) over 6 rounds; at every round the mean trace over the loops must be
    // within 4.5 standard errors (the loops' sample standard deviation / sqrt(R)) of the law
    // (6 checks: false alarm probability below 5e-5).
    let (n, rounds, loops) = (10u64, 6, 4000);
    let mut sum = vec![0.0; rounds];
    let mut sum_sq = vec![0.0; rounds];
    let mut host = rng(11);
    for _ in 0..loops {
        let mut m = model(r#"{"initial": {"means": [[1, 0]], "components": 1, "variance": 0.1}}"#, 1, DataPolicy::Replace);
        for t in 0..rounds {
            let y = m.sample(&[n], 1.0, &mut host).unwrap();
            m.fit(&[n], &y, &mut host).unwrap();
            let tr = m.metrics().unwrap()[0];
            sum[t] += tr;
            sum_sq[t] += tr * tr;
        }
    }
    let r = loops as f64;
    for t in 0..rounds {
        let mean = sum[t] / r;
        let se = ((sum_sq[t] / r - mean * mean) * r / (r - 1.0) / r).sqrt();
        let law = ((n as f64 - 1.0) / n as f64).powi(t as i32 + 1) * 0.2;
        assert!((mean - law).abs() < 4.5 * se, "round {}: mean trace {mean} vs law {law} (se {se})", t + 1);
    }
}

#[test]
fn accumulate_with_one_component_is_the_pooled_maximum_likelihood_fit() {
    // Incremental EM with frozen responsibilities is exact when M = 1: two batches fitted in
    // turn give the MLE of their union.
    let mut m = model(r#"{"initial": {"means": [[0, 0]], "components": 1}}"#, 1, DataPolicy::Accumulate { initial: 0 });
    let a = [0.1, 0.2, -0.4, 1.0, 2.0, 0.5];
    let b = [0.3, -0.7, 1.1, 0.0];
    m.fit(&[3], &a, &mut rng(1)).unwrap();
    m.fit(&[2], &b, &mut rng(1)).unwrap();
    let (_, mu, sigma) = component(&m.get_params().unwrap(), 0, 0);
    let all: Vec<f64> = a.iter().chain(&b).copied().collect();
    let rows: Vec<&[f64]> = all.chunks(2).collect();
    let mean = [0, 1].map(|c| rows.iter().map(|r| r[c]).sum::<f64>() / 5.0);
    for c in 0..2 {
        assert!((mu[c] - mean[c]).abs() < 1e-14);
        let var = rows.iter().map(|r| (r[c] - mean[c]).powi(2)).sum::<f64>() / 5.0;
        assert!((sigma[c * 2 + c] - var).abs() < 1e-14, "variance {c}: {} vs {var}", sigma[c * 2 + c]);
    }
}

#[test]
fn collapsed_components_are_floored_and_counted() {
    // Every sample at one point: both components' MLE covariances are 0, raised to the floor
    // variance_floor * tr(Sigma0)/d and counted in `regularized`.
    let mut m = model(
        r#"{"initial": {"means": [[0, 0]], "components": 2, "variance": 0.01, "radius": 0.25}, "variance_floor": 1e-4}"#,
        1,
        DataPolicy::Replace,
    );
    let y = [0.5; 20];
    m.fit(&[10], &y, &mut rng(1)).unwrap();
    let params = m.get_params().unwrap();
    // tr Sigma0 / d = 0.01 + r^2 / 2 (two offsets at +-r on the first axis: variance r^2 on
    // it, 0 on the second; per coordinate (r^2 + 0) / 2).
    let floor = 1e-4 * (0.01 + 0.25f64.powi(2) / 2.0);
    // The component nearer the point takes (almost) all the responsibility and is floored;
    // the other keeps its parameters (less than min_evidence = 2 of mass).
    let (w, _, s) = (0..2).map(|c| component(&params, 0, c)).max_by(|a, b| a.0.total_cmp(&b.0)).unwrap();
    assert!(w > 0.99, "weight {w}");
    assert!((s[0] - floor).abs() < 1e-15 && (s[3] - floor).abs() < 1e-15 && s[1].abs() < 1e-15, "{s:?} vs floor {floor}");
    let metrics = m.metrics().unwrap();
    assert!(metrics[5] >= 1.0, "regularized counts the floored components: {metrics:?}");
}

#[test]
fn checkpoints_restore_the_model_exactly() {
    for policy in [DataPolicy::Replace, DataPolicy::Accumulate { initial: 0 }] {
        let params = r#"{"initial": {"components": 3}}"#;
        let mut m = model(params, 3, policy);
        for s in 0..3 {
            let y = m.sample(&[40, 25, 3], 1.0, &mut rng(s)).unwrap();
            m.fit(&[40, 25, 3], &y, &mut rng(100 + s)).unwrap();
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
        // A truncated checkpoint is refused and leaves the model unchanged.
        let before = restored.get_params().unwrap();
        assert!(restored.set_params(&saved[..saved.len() - 1]).is_err());
        assert_eq!(restored.get_params().unwrap(), before);
    }
}

#[test]
fn log_likelihood_is_the_mixture_density() {
    let m = model(
        r#"{"initial": {"means": [[0, 0]], "components": 2, "offsets": [[-1, 0], [1, 0]], "weights": [1, 3], "variance": 0.5}}"#,
        1,
        DataPolicy::Replace,
    );
    let mut m = m;
    let y = [0.3, -0.4];
    let ll = m.log_likelihood(&y).unwrap()[0];
    let normal = |mx: f64| (-((y[0] - mx).powi(2) + y[1].powi(2)) / (2.0 * 0.5)).exp() / (2.0 * std::f64::consts::PI * 0.5);
    let expected = (0.25 * normal(-1.0) + 0.75 * normal(1.0)).ln();
    assert!((ll - expected).abs() < 1e-13, "{ll} vs {expected}");
}
