//! Tests through the generated C table (in-process) with the host helpers.

use super::*;
use coevo_plugin_api::host::{LoadedTable, PluginModel};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn table() -> LoadedTable {
    // SAFETY: the table is a static of this crate.
    unsafe { LoadedTable::from_raw(coevo_plugin_entry(), "coevo-gaussian (in-process)") }.unwrap()
}

fn model(params: &str, k: usize, policy: DataPolicy) -> PluginModel {
    table().create_by_name("gaussian_image", params, k, policy).unwrap()
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

#[test]
fn bad_params_are_rejected_with_clear_messages() {
    let t = table();
    let err = |p: &str| t.create_by_name("gaussian_image", p, 3, DataPolicy::Replace).unwrap_err().to_string();
    assert!(err(r#"{"variance": -1}"#).contains("variance must be finite and >= 0"));
    assert!(err(r#"{"dim": 1}"#).contains("circle\" needs dim >= 2"));
    assert!(err(r#"{"means": [[0, 0]]}"#).contains("means has 1 rows but there are 3 texts"));
    assert!(err(r#"{"estimator": "median"}"#).contains("estimator must be"));
    assert!(err(r#"{"varianse": 1}"#).contains("unknown field `varianse`"));
}

#[test]
fn log_likelihood_is_the_gaussian_density() {
    let mut m = model(r#"{"dim": 2, "variance": 0.5, "means": [[1, 0], [0, 2]]}"#, 2, DataPolicy::Replace);
    let y = [0.3, -0.4, 1.0, 2.5];
    let ll = m.log_likelihood(&y).unwrap();
    let density = |y: &[f64], mu: [f64; 2]| {
        let q = ((y[0] - mu[0]).powi(2) + (y[1] - mu[1]).powi(2)) / 0.5;
        -(2.0 * std::f64::consts::PI * 0.5).ln() - 0.5 * q
    };
    for (j, yj) in y.chunks(2).enumerate() {
        for (i, mu) in [[1.0, 0.0], [0.0, 2.0]].into_iter().enumerate() {
            assert!((ll[j * 2 + i] - density(yj, mu)).abs() < 1e-12, "sample {j}, text {i}");
        }
    }
}

#[test]
fn mle_recovers_mean_and_covariance_and_temperature_scales_it() {
    // n draws of N(mu, T Sigma0): the MLE mean has standard error sqrt(T * 0.1 / n) per
    // coordinate (0.0022 at n = 20000, T = 1); the MLE variance sqrt(2 / n) relative (1%).
    // Tolerances are 5 standard errors.
    let n = 20_000u64;
    for t in [1.0, 2.0] {
        let source = model(r#"{"means": [[1, 0], [0, 2]]}"#, 2, DataPolicy::Replace);
        let mut source = source;
        let y = source.sample(&[n, n], t, &mut rng(3)).unwrap();
        let mut m = model(r#"{"means": [[1, 0], [0, 2]]}"#, 2, DataPolicy::Replace);
        m.fit(&[n, n], &y, &mut rng(4)).unwrap();
        let params = m.get_params().unwrap();
        // [format, K, d, per text: mu (2), Sigma (4), ...]
        let per_text = 3 * 2 + 3 * 4 + 2;
        for (i, mu0) in [[1.0, 0.0], [0.0, 2.0]].into_iter().enumerate() {
            let r = &params[3 + i * per_text..];
            let se_mean = (t * 0.1 / n as f64).sqrt();
            assert!((r[0] - mu0[0]).abs() < 5.0 * se_mean && (r[1] - mu0[1]).abs() < 5.0 * se_mean, "text {i} mean {:?}", &r[..2]);
            for (c, expected) in [(2, t * 0.1), (5, t * 0.1)] {
                assert!((r[c] / expected - 1.0).abs() < 5.0 * (2.0 / n as f64).sqrt(), "text {i} variance {} vs {expected}", r[c]);
            }
            let off_se = t * 0.1 / (n as f64).sqrt();
            assert!(r[3].abs() < 5.0 * off_se, "text {i} covariance {}", r[3]);
        }
    }
}

#[test]
fn singular_covariance_is_clamped_and_reported() {
    let mut m = model(r#"{"means": [[0, 0]]}"#, 1, DataPolicy::Replace);
    // Two samples: a rank-1 MLE covariance.
    m.fit(&[2], &[0.0, 0.0, 1.0, 1.0], &mut rng(1)).unwrap();
    let metrics = m.metrics().unwrap();
    assert_eq!(metrics[2], 1.0, "regularized");
    assert!((metrics[0] - 0.5).abs() < 1e-15, "trace of the exact estimate");
    let ll = m.log_likelihood(&[0.5, 0.5, 0.5, -0.5]).unwrap();
    assert!(ll[0].is_finite() && ll[1] < -1e6, "on the support finite, off it hugely negative: {ll:?}");
}

#[test]
fn accumulate_and_checkpoints() {
    let mut m = model("", 2, DataPolicy::Accumulate { initial: 10 });
    let y = m.sample(&[3, 4], 1.0, &mut rng(5)).unwrap();
    m.fit(&[3, 4], &y, &mut rng(6)).unwrap();
    let saved = m.get_params().unwrap();
    let per_text = 3 * 2 + 3 * 4 + 2;
    assert_eq!(saved[3 + 12], 13.0, "text 0 saw 10 initial + 3");
    assert_eq!(saved[3 + per_text + 12], 14.0, "text 1 saw 10 initial + 4");
    let mut restored = model("", 1, DataPolicy::Accumulate { initial: 10 });
    restored.set_params(&saved).unwrap();
    assert_eq!(restored.num_texts(), 2);
    let probe = [0.1, 0.2, -0.3, 0.4];
    assert_eq!(restored.log_likelihood(&probe).unwrap(), m.log_likelihood(&probe).unwrap());
    assert_eq!(restored.get_params().unwrap(), saved);
    m.add_text().unwrap();
    assert_eq!(m.num_texts(), 3);
}
