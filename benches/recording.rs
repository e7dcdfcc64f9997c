//! What recording costs: `coevo run scenarios/coevolve.ron` (1 replicate, 4000 rounds) end to
//! end against the training alone, as ratios measured in one process, interleaved.
//!
//! `cargo bench --bench recording` prints, for each way of recording, the median wall time of
//! `REPEATS` interleaved runs, its ratio to the training alone (the same worlds stepped with
//! measurement off, nothing written) and the bytes written. The README's Output section quotes
//! one such run; the target is `every: 10` within 1.3x of the training alone.

use std::path::{Path, PathBuf};
use std::time::Instant;

use coevo::Scenario;
use coevo::run::{RunOptions, run};
use coevo::world::Simulation;

const REPEATS: usize = 5;

/// A way of recording: a name and how it changes the scenario.
type Variant = (&'static str, fn(&mut Scenario));

const VARIANTS: [Variant; 4] = [
    ("every round (default)", |_| {}),
    ("every: 10", |s| s.output.every = 10),
    ("every: 10, per_text: false", |s| {
        s.output.every = 10;
        s.output.per_text = false;
    }),
    ("every: 100", |s| s.output.every = 100),
];

fn training_alone(scenario: &Scenario) -> f64 {
    let start = Instant::now();
    let mut sim = Simulation::new(scenario, 0).expect("the scenario builds");
    sim.set_measuring(false);
    for _ in 0..scenario.rounds {
        sim.step().expect("a round runs");
    }
    start.elapsed().as_secs_f64()
}

fn folder_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map(|d| d.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0)
}

fn main() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/coevolve.ron");
    let (scenario, source) = Scenario::load(&file).expect("scenarios/coevolve.ron loads");
    let out: PathBuf = std::env::temp_dir().join("coevo-bench-recording");
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len() + 1];
    let mut bytes = vec![0; VARIANTS.len()];
    for _ in 0..REPEATS {
        times[0].push(training_alone(&scenario));
        for (v, (_, change)) in VARIANTS.iter().enumerate() {
            let mut s = scenario.clone();
            change(&mut s);
            let options = RunOptions { out_dir: Some(out.clone()), force: true, ..Default::default() };
            let start = Instant::now();
            run(&s, &source, &file, &options).expect("the run completes");
            times[v + 1].push(start.elapsed().as_secs_f64());
            bytes[v] = folder_bytes(&out);
        }
    }
    let median = |t: &mut Vec<f64>| {
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    let base = median(&mut times[0]);
    println!("coevolve.ron, 1 replicate, {} rounds, median of {REPEATS} interleaved runs", scenario.rounds);
    println!("{:<30} {:>9} {:>8} {:>12}", "recording", "seconds", "ratio", "bytes");
    println!("{:<30} {:>9.3} {:>8.2} {:>12}", "training alone", base, 1.0, 0);
    for (v, (name, _)) in VARIANTS.iter().enumerate() {
        let t = median(&mut times[v + 1]);
        println!("{name:<30} {t:>9.3} {:>8.2} {:>12}", t / base, bytes[v]);
    }
    let _ = std::fs::remove_dir_all(&out);
}
