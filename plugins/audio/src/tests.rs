//! Tests through the generated C table (in-process) with the host helpers.

use super::*;
use coevo_plugin_api::host::{HostError, LoadedTable, PluginModel};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn table() -> LoadedTable {
    // SAFETY: the table is a static of this crate.
    unsafe { LoadedTable::from_raw(coevo_plugin_entry(), "coevo-audio (in-process)") }.unwrap()
}

fn model(params: &str, k: usize, policy: DataPolicy) -> PluginModel {
    table().create_by_name("von_mises_pitch", params, k, policy).unwrap()
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Column `m` of the metrics for text `i`.
fn metric(m: &mut PluginModel, i: usize, name: &str) -> f64 {
    let col = m.metric_names().iter().position(|n| n == name).unwrap();
    let cols = m.metric_names().len();
    m.metrics().unwrap()[i * cols + col]
}

#[test]
fn metadata() {
    let t = table();
    assert_eq!(t.name(), "coevo-audio");
    assert_eq!(t.models().len(), 1);
    assert_eq!(t.models()[0].modality, "audio");
    assert_eq!(t.models()[0].fixed_dim, Some(1));
    let m = model("", 5, DataPolicy::Replace);
    assert_eq!(&m.metric_names()[..2], ["diversity", "fidelity"]);
}

#[test]
fn bad_params_are_rejected_with_clear_messages() {
    let t = table();
    let err = |p: &str| t.create_by_name("von_mises_pitch", p, 3, DataPolicy::Replace).unwrap_err().to_string();
    assert!(err(r#"{"kappa0": 0}"#).contains("kappa0 must be finite and > 0, got 0"));
    assert!(err(r#"{"kappa0": -1.5}"#).contains("kappa0 must be finite and > 0"));
    assert!(err(r#"{"means": [0.0, 1.0]}"#).contains("means has 2 angles but there are 3 texts"));
    assert!(err(r#"{"means": "circle"}"#).contains("means must be \"uniform\""));
    assert!(err(r#"{"means": [0.0, "x", 1.0]}"#).contains("means[1]"));
    assert!(err(r#"{"kapa0": 1}"#).contains("unknown field `kapa0`"));
    assert!(err(r#"{"prior": {"kappa": 0}}"#).contains("prior.kappa"));
    assert!(err(r#"{"kappa0": "big"}"#).contains("invalid params"));
}

#[test]
fn mle_recovers_parameters_and_temperature_scales_kappa() {
    let mut m = model(r#"{"kappa0": 4.0, "means": [1.0, -2.0]}"#, 2, DataPolicy::Replace);
    let n = 40_000u64;
    for (t, kappa) in [(1.0, 4.0), (2.0, 2.0), (0.5, 8.0)] {
        let mut fresh = model(r#"{"kappa0": 4.0, "means": [1.0, -2.0]}"#, 2, DataPolicy::Replace);
        let y = fresh.sample(&[n, n], t, &mut rng(3)).unwrap();
        m.fit(&[n, n], &y, &mut rng(4)).unwrap();
        for (i, mu) in [(0, 1.0), (1, -2.0)] {
            let k = metric(&mut m, i, "kappa");
            assert!((k - kappa).abs() < 0.05 * kappa, "T={t}: kappa {k} vs {kappa}");
            assert!(vonmises::angular_distance(metric(&mut m, i, "mean_direction"), mu) < 0.02);
            assert!(metric(&mut m, i, "fidelity") < 0.02);
            let cv = metric(&mut m, i, "diversity");
            assert!((cv - vonmises::one_minus_a1(k)).abs() < 1e-12);
        }
    }
}

#[test]
fn log_likelihood_is_the_von_mises_density() {
    let mut m = model(r#"{"kappa0": 2.5, "means": [0.5, 2.0, -1.0]}"#, 3, DataPolicy::Replace);
    let y = [0.1, 3.0, -3.1];
    let ll = m.log_likelihood(&y).unwrap();
    for (j, &theta) in y.iter().enumerate() {
        for (i, mu) in [0.5, 2.0, -1.0].into_iter().enumerate() {
            let want = vonmises::log_density(theta, mu, 2.5);
            assert!((ll[j * 3 + i] - want).abs() < 1e-12);
        }
    }
}

#[test]
fn texts_without_evidence_keep_their_parameters() {
    let mut m = model("", 3, DataPolicy::Replace);
    let before = m.get_params().unwrap();
    m.fit(&[0, 1, 0], &[0.3], &mut rng(0)).unwrap();
    assert_eq!(m.get_params().unwrap(), before);
}

#[test]
fn identical_angles_clamp_kappa_and_flag_it() {
    let mut m = model("", 1, DataPolicy::Replace);
    m.fit(&[4], &[0.7; 4], &mut rng(0)).unwrap();
    assert_eq!(metric(&mut m, 0, "kappa"), KAPPA_MAX);
    assert_eq!(metric(&mut m, 0, "regularized"), 1.0);
    let y = m.sample(&[100], 1.0, &mut rng(1)).unwrap();
    assert!(y.iter().all(|v| (v - 0.7).abs() < 1e-3));
    assert!(m.log_likelihood(&y).unwrap().iter().all(|v| v.is_finite()));
}

/// Replace with few samples per round: the circular variance contracts on average (collapse).
#[test]
fn replace_loop_collapses_diversity() {
    let reps = 40;
    let rounds = 30;
    let mut mean_div = 0.0;
    for r in 0..reps {
        let mut m = model(r#"{"kappa0": 2.0}"#, 1, DataPolicy::Replace);
        let mut g = rng(100 + r);
        for _ in 0..rounds {
            let y = m.sample(&[5], 1.0, &mut g).unwrap();
            m.fit(&[5], &y, &mut g).unwrap();
        }
        mean_div += metric(&mut m, 0, "diversity") / reps as f64;
    }
    let start = vonmises::one_minus_a1(2.0);
    assert!(mean_div < 0.5 * start, "mean diversity {mean_div} vs initial {start}");
}

/// Accumulate keeps constant-size statistics and, with a large initial sample, stays close to
/// the initial conditional.
#[test]
fn accumulate_is_constant_memory_and_stable() {
    let mut m = model(r#"{"kappa0": 2.0}"#, 2, DataPolicy::Accumulate { initial: 2000 });
    let mut g = rng(9);
    let len0 = m.get_params().unwrap().len();
    for _ in 0..50 {
        let y = m.sample(&[5, 5], 1.0, &mut g).unwrap();
        m.fit(&[5, 5], &y, &mut g).unwrap();
        assert_eq!(m.get_params().unwrap().len(), len0);
    }
    for i in 0..2 {
        let k = metric(&mut m, i, "kappa");
        assert!((k - 2.0).abs() < 0.3, "kappa drifted to {k}");
        assert!(metric(&mut m, i, "fidelity") < 0.15);
    }
    // The statistics count the initial sample plus every batch.
    let p = m.get_params().unwrap();
    assert_eq!(p[2 + 4], 2000.0 + 50.0 * 5.0);
}

/// `fresh` never reaches a plugin from coevo (the host mixes real data itself), so the model
/// refuses it instead of carrying code no run exercises.
#[test]
fn fresh_is_refused_because_the_host_mixes_real_data_itself() {
    let e = table().create_by_name("von_mises_pitch", "", 2, DataPolicy::Fresh { lambda: 0.5 }).unwrap_err().to_string();
    assert!(e.contains("fresh data policy is mixed by the host") && e.contains("create with replace"), "{e}");
}

#[test]
fn add_text_starts_at_the_prior() {
    let mut m = model(r#"{"prior": {"mean": 1.5, "kappa": 7.0}}"#, 2, DataPolicy::Accumulate { initial: 10 });
    m.add_text().unwrap();
    assert_eq!(m.num_texts(), 3);
    assert_eq!(metric(&mut m, 2, "kappa"), 7.0);
    assert_eq!(metric(&mut m, 2, "mean_direction"), 1.5);
    assert_eq!(metric(&mut m, 2, "fidelity"), 0.0);
    let y = m.sample(&[0, 0, 3], 1.0, &mut rng(0)).unwrap();
    assert_eq!(y.len(), 3);
    m.fit(&[0, 0, 3], &y, &mut rng(0)).unwrap();
    // The new text's statistics hold its 10 initial draws plus the 3 samples.
    assert_eq!(m.get_params().unwrap()[2 + 2 * PER_TEXT + 4], 13.0);
}

#[test]
fn checkpoint_round_trip_reproduces_the_future() {
    let mut a = model("", 3, DataPolicy::Accumulate { initial: 5 });
    let mut g = rng(5);
    let y = a.sample(&[4, 4, 4], 1.0, &mut g).unwrap();
    a.fit(&[4, 4, 4], &y, &mut g).unwrap();
    a.add_text().unwrap();
    let ckpt = a.get_params().unwrap();

    let mut b = model("", 3, DataPolicy::Accumulate { initial: 5 });
    b.set_params(&ckpt).unwrap();
    assert_eq!(b.num_texts(), 4);
    assert_eq!(b.get_params().unwrap(), ckpt);
    let counts = [3, 3, 3, 3];
    let (mut ga, mut gb) = (rng(6), rng(6));
    for _ in 0..3 {
        let ya = a.sample(&counts, 1.0, &mut ga).unwrap();
        let yb = b.sample(&counts, 1.0, &mut gb).unwrap();
        assert_eq!(ya, yb);
        a.fit(&counts, &ya, &mut ga).unwrap();
        b.fit(&counts, &yb, &mut gb).unwrap();
    }
    assert_eq!(a.get_params().unwrap(), b.get_params().unwrap());

    let e = b.set_params(&ckpt[..ckpt.len() - 1]).unwrap_err();
    assert!(matches!(e, HostError::Call { .. }) && e.to_string().contains("checkpoint length"));
    let mut bad = ckpt.clone();
    bad[0] = 7.0;
    assert!(b.set_params(&bad).unwrap_err().to_string().contains("not a von_mises_pitch checkpoint"));
    // A rejected checkpoint leaves the model untouched.
    assert_eq!(b.num_texts(), 4);
}
