//! The same scenario and seed give the same bits on every machine: every instruction-set
//! variant of coevo's vectorised arithmetic (`coevo::linalg::widest_vectors!`: AVX-512, AVX2
//! with FMA, the baseline) computes the same values, so a run on a laptop without AVX-512 or
//! on an ARM machine reproduces one made here.
//!
//! One machine can only run the variants its CPU has; this test caps the variant
//! (`coevo::linalg::limit_vectors`) and runs the same worlds under each one available, comparing
//! every metric of every round bit for bit. It covers the exact small-`d` block and the
//! posterior's `exp` (paper scale), the `Full` quadratic form's matrix product and its guard
//! (`d = 12`), the structured families' products and kernels (`Diagonal`, `d = 12`) and the
//! metrics' matrix roots (Frechet distance at `d = 12`). The cap is process-wide: other tests
//! running meanwhile only get slower, since every variant gives the same values.

use coevo::bench::{scaled_scenario, structured_scenario};
use coevo::linalg::{Vectors, limit_vectors};
use coevo::models::Structure;
use coevo::scenario::Scenario;
use coevo::world::Simulation;

/// Every metric value of `rounds` rounds, as bits, with its round, model, text and name.
fn metric_bits(scenario: &Scenario, rounds: usize) -> Vec<(u64, String, Option<u32>, String, u64)> {
    let mut sim = Simulation::new(scenario, 0).expect("the synthetic scenario is valid");
    let mut out = Vec::new();
    for _ in 0..rounds {
        for r in sim.step().expect("round runs") {
            out.push((r.round, r.model.to_string(), r.text, r.metric.to_string(), r.value.to_bits()));
        }
    }
    out
}

fn available() -> Vec<Vectors> {
    let mut variants = vec![Vectors::Baseline];
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            variants.push(Vectors::Avx2);
        }
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma") {
            variants.push(Vectors::Avx512);
        }
    }
    variants
}

#[test]
fn every_instruction_set_gives_the_same_bits() {
    let scenarios = [
        ("paper scale, exact block", scaled_scenario(5, 2, 1000, 3), 6),
        ("Full d = 12, quadratic form", scaled_scenario(6, 12, 600, 3), 4),
        ("Diagonal d = 12", structured_scenario(6, 12, 600, 3, Structure::Diagonal), 4),
    ];
    let variants = available();
    for (label, scenario, rounds) in &scenarios {
        let runs: Vec<_> = variants
            .iter()
            .map(|&v| {
                limit_vectors(v);
                let bits = metric_bits(scenario, *rounds);
                limit_vectors(Vectors::Avx512);
                (v, bits)
            })
            .collect();
        let (first, reference) = &runs[0];
        assert!(reference.len() > 20 * rounds, "{label}: only {} metric values", reference.len());
        for (v, bits) in &runs[1..] {
            assert_eq!(bits.len(), reference.len(), "{label}: {v:?} and {first:?} record different rows");
            if let Some((a, b)) = reference.iter().zip(bits).find(|(a, b)| a != b) {
                panic!("{label}: {v:?} differs from {first:?}: {a:?} against {b:?}");
            }
        }
    }
}
