//! Checkpoints: the whole state of a run's worlds at a round boundary, so that `coevo resume`
//! continues exactly where the run stopped.
//!
//! `checkpoint.json` (written atomically every `--checkpoint-every K` rounds) holds:
//! - the scenario: its source text, file name and SHA-256 (as in `manifest.json`), and the
//!   effective seed, rounds and replicates (command-line overrides included);
//! - the datasets the scenario read (name, file, SHA-256 of their bytes): a resumed run reads
//!   them again from the scenario's files and refuses one that changed;
//! - the round reached, and where the `metrics` and `aggregate` tables and `phases.csv` ended
//!   at that round: a resumed run cuts them back there (dropping rows of rounds after the
//!   checkpoint that a killed run had written) and appends. For CSV that is a length; for
//!   Parquet the length of the row groups and the footer that followed them (the next row
//!   group overwrites the footer on disk), so that a Parquet table is made whole again even if
//!   the kill left it without a footer (see `coevo::output::parquet`);
//! - the effective `output` section (command-line overrides included: the table format,
//!   what is recorded) and the run's observers: the summary tracker (collapse rounds,
//!   steady-state sums, early-stop streaks and stops) and the drift chains that label
//!   `phases.csv`. They are stored rather than rebuilt from the tables because the tables may
//!   hold every k-th round or some metrics only, while the observers see every row;
//! - per world, the round counter and per entity (by name) its ChaCha8 stream position
//!   (seed, stream, word position), its text model (`p`, `p0`, accumulated counts) and its
//!   conditional model's [`save_state`](crate::models::ConditionalModel::save_state).
//!
//! The file ends with `sha256`, the SHA-256 of its content (the checkpoint serialised without
//! it), verified before anything is restored or any table cut back; every field is then
//! checked (the round within the run, each `p` finite and on the simplex, stream positions
//! readable, table marks within their files and at a row boundary) before any file is
//! touched, so a corrupt or edited checkpoint is refused (exit 2) and leaves the folder as it
//! was.
//!
//! World numbers are stored as the hexadecimal bits of each `f64` (16 digits per value):
//! exact, NaN-safe, and independent of any decimal parser. The observers are stored as RON,
//! whose floats are Rust's shortest round-trip decimals (NaN and inf included): exact too.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::diagnostics::DriftChains;
use crate::output::SummaryTracker;
use crate::output::parquet::TableMark;
use crate::rng::Stream;
use crate::scenario::OutputSpec;
use crate::world::{ConditionalAgent, EntityName, RandomStream, RoundCounter, ScenarioEntities, Simulation, TextAgent};

/// Format tag of `checkpoint.json`.
pub const FORMAT: &str = "coevo-checkpoint-v3";

/// File name of the checkpoint inside an output folder.
pub const FILE: &str = "checkpoint.json";

/// A whole run at a round boundary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// [`FORMAT`].
    pub format: String,
    /// The scenario file as given.
    pub scenario_file: String,
    /// SHA-256 of the scenario source (the manifest's `scenario_sha256`).
    pub scenario_sha256: String,
    /// The scenario source (RON), so that resuming needs no other file.
    pub scenario_source: String,
    /// Effective seed (after command-line overrides).
    pub seed: u64,
    /// Effective number of rounds.
    pub rounds: u64,
    /// Effective number of replicates.
    pub replicates: u64,
    /// The datasets the run read, in scenario order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datasets: Vec<DatasetRecord>,
    /// Rounds completed.
    pub round: u64,
    /// Where `metrics` ends after `round`, in bytes: the CSV's length, or the length of the
    /// Parquet file's row groups.
    pub metrics_bytes: u64,
    /// Where `aggregate` ends after `round`, in bytes (0 when the run writes no aggregate).
    pub aggregate_bytes: u64,
    /// Length of `phases.csv` in bytes after `round`.
    pub phases_bytes: u64,
    /// The effective `output` section (its `format` is the tables').
    pub output: OutputSpec,
    /// The [`Observers`] at `round`, as RON.
    pub observers: String,
    /// Parquet: the footer (hex) that followed `metrics`' row groups after `round`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_footer: Option<String>,
    /// Parquet: the footer (hex) that followed `aggregate`'s row groups after `round`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate_footer: Option<String>,
    /// One state per replicate, in replicate order.
    pub worlds: Vec<WorldState>,
    /// SHA-256 (hex) of the checkpoint serialised without this field (see [`Checkpoint::seal`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// A dataset a run read: enough to recognise the same data again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetRecord {
    /// The `Dataset` entity's name.
    pub name: String,
    /// The data file as read (relative paths joined to the scenario's folder).
    pub file: String,
    /// SHA-256 of its bytes (see [`crate::data::Dataset::sha256`]).
    pub sha256: String,
    /// Rows.
    pub rows: usize,
    /// Dimension.
    pub dim: usize,
    /// Rows per label.
    pub counts: Vec<usize>,
}

impl DatasetRecord {
    /// The records of a loaded scenario's datasets, in scenario order.
    pub fn of(scenario: &crate::scenario::Scenario) -> Vec<DatasetRecord> {
        scenario
            .datasets()
            .into_iter()
            .filter_map(|(name, data)| {
                let data = data?;
                Some(DatasetRecord {
                    name: name.to_string(),
                    file: data.file().display().to_string(),
                    sha256: data.sha256().to_string(),
                    rows: data.rows(),
                    dim: data.dim(),
                    counts: (0..data.num_labels()).map(|i| data.count(i)).collect(),
                })
            })
            .collect()
    }

    /// Refuses `now` (the datasets read again) unless they are the ones `recorded`.
    pub fn check_unchanged(recorded: &[DatasetRecord], now: &[DatasetRecord]) -> Result<(), String> {
        for r in recorded {
            match now.iter().find(|n| n.name == r.name) {
                Some(n) if n.sha256 == r.sha256 => {}
                Some(n) => {
                    return Err(format!(
                        "dataset `{}` changed since the run started: {} had sha256 {}, {} now has {}; resuming would mix two datasets (start a new run)",
                        r.name, r.file, r.sha256, n.file, n.sha256
                    ));
                }
                None => return Err(format!("dataset `{}` ({}) is no longer in the scenario", r.name, r.file)),
            }
        }
        Ok(())
    }
}

/// The state of one world.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorldState {
    /// Rounds completed.
    pub round: u64,
    /// Stateful entities in scenario order.
    pub entities: Vec<EntityState>,
}

/// The state of one entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityState {
    /// Entity name.
    pub name: String,
    /// Its random stream, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamState>,
    /// Its text model, if it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextState>,
    /// Its conditional model's state (hex `f64` bits), if it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditional: Option<String>,
}

/// Position of a ChaCha8 stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamState {
    /// The 32-byte seed, hex.
    pub seed: String,
    /// Stream number.
    pub stream: u64,
    /// Position in 32-bit words (a `u128`, in decimal).
    pub word_pos: String,
}

/// A text model's mutable state (hex `f64` bits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextState {
    /// Current probabilities.
    pub p: String,
    /// Initial probabilities (grow with injected new texts).
    pub p0: String,
    /// Accumulated soft counts (empty unless `Accumulate`).
    pub accumulated: String,
}

/// Encodes `f64`s as the hexadecimal of their bits, 16 digits each.
pub fn encode_f64s(values: &[f64]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(16 * values.len());
    for v in values {
        let _ = write!(s, "{:016x}", v.to_bits());
    }
    s
}

/// Decodes [`encode_f64s`].
pub fn decode_f64s(s: &str) -> Result<Vec<f64>, String> {
    if !s.len().is_multiple_of(16) || !s.is_ascii() {
        return Err(format!("a number list must be 16 hex digits per value, got {} characters", s.len()));
    }
    (0..s.len() / 16)
        .map(|i| u64::from_str_radix(&s[16 * i..16 * i + 16], 16).map(f64::from_bits).map_err(|e| format!("value {i}: {e}")))
        .collect()
}

/// Encodes bytes as hexadecimal, 2 digits each.
pub fn encode_bytes(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(2 * bytes.len());
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Decodes [`encode_bytes`].
pub fn decode_bytes(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return Err(format!("a byte string must be 2 hex digits per byte, got {} characters", s.len()));
    }
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| format!("byte {i}: {e}"))).collect()
}

impl Checkpoint {
    /// Where `metrics` and `aggregate` ended at the checkpoint.
    pub fn table_marks(&self) -> Result<(TableMark, TableMark), String> {
        let footer = |hex: &Option<String>, table: &str| {
            hex.as_deref().map(decode_bytes).transpose().map_err(|e| format!("the footer of the {table} table: {e}"))
        };
        Ok((
            TableMark { bytes: self.metrics_bytes, footer: footer(&self.metrics_footer, "metrics")? },
            TableMark { bytes: self.aggregate_bytes, footer: footer(&self.aggregate_footer, "aggregate")? },
        ))
    }
}

/// Whether `p` is a probability vector: finite, non-negative, summing to 1 (within rounding).
fn on_simplex(p: &[f64]) -> Result<(), String> {
    if let Some(bad) = p.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
        return Err(format!("holds {bad}, not a probability"));
    }
    let sum: f64 = p.iter().sum();
    // Refits renormalise, so the sum is 1 up to the rounding of K additions.
    if (sum - 1.0).abs() > 1e-9 * (p.len().max(1) as f64) {
        return Err(format!("sums to {sum}, not 1"));
    }
    Ok(())
}

fn stream_state(s: &Stream) -> StreamState {
    StreamState { seed: encode_bytes(&s.get_seed()), stream: s.get_stream(), word_pos: s.get_word_pos().to_string() }
}

fn restore_stream(state: &StreamState) -> Result<Stream, String> {
    use rand::SeedableRng;
    let seed: [u8; 32] = decode_bytes(&state.seed)
        .map_err(|e| format!("stream seed: {e}"))?
        .try_into()
        .map_err(|_| "a stream seed must be 64 hex digits".to_string())?;
    let pos: u128 = state.word_pos.parse().map_err(|e| format!("stream word_pos `{}`: {e}", state.word_pos))?;
    let mut s = Stream::from_seed(seed);
    s.set_stream(state.stream);
    s.set_word_pos(pos);
    Ok(s)
}

/// Captures the state of one world: every entity with a stream or a model, in scenario order.
pub fn capture(sim: &Simulation) -> Result<WorldState, String> {
    let world = sim.world();
    let mut entities = Vec::new();
    for &e in &world.resource::<ScenarioEntities>().all {
        let Some(name) = world.get::<EntityName>(e) else { continue };
        let conditional = match world.get::<ConditionalAgent>(e) {
            Some(c) => Some(encode_f64s(&c.model.save_state().map_err(|err| format!("model `{}`: {err}", name.0))?)),
            None => None,
        };
        let text = world.get::<TextAgent>(e).map(|t| TextState {
            p: encode_f64s(&t.model.p),
            p0: encode_f64s(&t.model.p0),
            accumulated: encode_f64s(&t.model.accumulated),
        });
        let stream = world.get::<RandomStream>(e).map(|s| stream_state(&s.0));
        if stream.is_some() || text.is_some() || conditional.is_some() {
            entities.push(EntityState { name: name.0.to_string(), stream, text, conditional });
        }
    }
    Ok(WorldState { round: sim.round(), entities })
}

/// Restores a world built from the same scenario to `state`.
pub fn restore(sim: &mut Simulation, state: &WorldState) -> Result<(), String> {
    let world = sim.world_mut();
    let mut query = world.query::<(&EntityName, Option<&mut RandomStream>, Option<&mut TextAgent>, Option<&mut ConditionalAgent>)>();
    let mut restored = 0;
    let saved_by_name: std::collections::HashMap<&str, &EntityState> = state.entities.iter().map(|e| (e.name.as_str(), e)).collect();
    for (name, stream, text, conditional) in query.iter_mut(world) {
        let Some(saved) = saved_by_name.get(&*name.0).copied() else {
            if stream.is_some() || text.is_some() || conditional.is_some() {
                return Err(format!("the checkpoint has no state for entity `{}`", name.0));
            }
            continue;
        };
        restored += 1;
        let what = |part: &str| format!("entity `{}`: the checkpoint's {part} does not match the scenario", name.0);
        match (stream, &saved.stream) {
            (Some(mut s), Some(st)) => s.0 = restore_stream(st).map_err(|e| format!("entity `{}`: {e}", name.0))?,
            (None, None) => {}
            _ => return Err(what("random stream")),
        }
        match (text, &saved.text) {
            (Some(mut t), Some(ts)) => {
                let decode = |s: &str| decode_f64s(s).map_err(|e| format!("entity `{}`: {e}", name.0));
                t.model.p = decode(&ts.p)?;
                t.model.p0 = decode(&ts.p0)?;
                t.model.accumulated = decode(&ts.accumulated)?;
            }
            (None, None) => {}
            _ => return Err(what("text model")),
        }
        match (conditional, &saved.conditional) {
            (Some(mut c), Some(cs)) => {
                let values = decode_f64s(cs).map_err(|e| format!("entity `{}`: {e}", name.0))?;
                c.model.load_state(&values).map_err(|e| format!("entity `{}`: {e}", name.0))?;
            }
            (None, None) => {}
            _ => return Err(what("conditional model")),
        }
    }
    if restored != state.entities.len() {
        let names: Vec<&str> = state.entities.iter().map(|e| e.name.as_str()).collect();
        return Err(format!("the checkpoint holds entities the scenario does not ({})", names.join(", ")));
    }
    world.resource_mut::<RoundCounter>().0 = state.round;
    Ok(())
}

/// What follows a run's rows besides the tables: stored in a checkpoint as RON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Observers {
    /// Summary, collapse rounds and early stops.
    pub summary: SummaryTracker,
    /// The drift chains of `phases.csv`.
    pub phases: DriftChains,
}

impl Observers {
    /// As RON text (exact floats).
    pub fn encode(&self) -> String {
        ron::to_string(self).expect("observers serialise")
    }

    /// Back from [`encode`](Self::encode)'s text.
    pub fn decode(text: &str) -> Result<Observers, String> {
        ron::from_str(text).map_err(|e| format!("observers: {e}"))
    }
}

impl Checkpoint {
    /// The SHA-256 (hex) of the checkpoint's content: its JSON without `sha256`.
    fn content_sha256(&self) -> String {
        use sha2::{Digest, Sha256};
        let unsealed = Checkpoint { sha256: None, ..self.clone() };
        format!("{:x}", Sha256::digest(serde_json::to_vec(&unsealed).expect("a checkpoint serialises")))
    }

    /// Sets `sha256` to the checksum of the content (done by [`write`](Self::write); public so
    /// that tests can forge a checkpoint whose checksum holds and see the field checks).
    pub fn seal(&mut self) {
        self.sha256 = Some(self.content_sha256());
    }

    /// Writes `dir/checkpoint.json` atomically, sealed with its checksum.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let mut sealed = self.clone();
        sealed.seal();
        crate::output::write_atomic(&dir.join(FILE), &serde_json::to_vec(&sealed).expect("a checkpoint serialises"))
    }

    /// Every check of a checkpoint's fields that needs no other file: the round within the
    /// run and the same in every world, one world per replicate, each text model's `p` and
    /// `p0` finite, non-negative and summing to 1, its accumulated counts finite and
    /// non-negative, every stream readable and every conditional state decodable.
    pub fn check_fields(&self) -> Result<(), String> {
        if self.round == 0 || self.round >= self.rounds {
            return Err(format!(
                "round {} is not a round a checkpoint is taken at in a run of {} rounds (1 to {})",
                self.round,
                self.rounds,
                self.rounds.saturating_sub(1)
            ));
        }
        if self.worlds.len() as u64 != self.replicates {
            return Err(format!("{} world states for {} replicates", self.worlds.len(), self.replicates));
        }
        for (r, world) in self.worlds.iter().enumerate() {
            if world.round != self.round {
                return Err(format!("replicate {r} is at round {} but the checkpoint at round {}", world.round, self.round));
            }
            for e in &world.entities {
                let at = |what: &str| format!("replicate {r}, entity `{}`: {what}", e.name);
                if let Some(s) = &e.stream {
                    restore_stream(s).map_err(|m| at(&m))?;
                }
                if let Some(t) = &e.text {
                    let p = decode_f64s(&t.p).map_err(|m| at(&format!("p: {m}")))?;
                    let p0 = decode_f64s(&t.p0).map_err(|m| at(&format!("p0: {m}")))?;
                    let acc = decode_f64s(&t.accumulated).map_err(|m| at(&format!("accumulated: {m}")))?;
                    for (name, v) in [("p", &p), ("p0", &p0)] {
                        on_simplex(v).map_err(|m| at(&format!("{name} {m}")))?;
                    }
                    if p.len() != p0.len() || !(acc.is_empty() || acc.len() == p.len()) {
                        return Err(at(&format!("p, p0 and accumulated have {}, {} and {} values", p.len(), p0.len(), acc.len())));
                    }
                    if let Some(bad) = acc.iter().find(|a| !(a.is_finite() && **a >= 0.0)) {
                        return Err(at(&format!("accumulated count {bad} is not a finite count")));
                    }
                }
                if let Some(c) = &e.conditional {
                    decode_f64s(c).map_err(|m| at(&format!("conditional state: {m}")))?;
                }
            }
        }
        Ok(())
    }

    /// Reads `path`, checking its format tag.
    pub fn read(path: &Path) -> Result<Checkpoint, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let not_ours = |e: serde_json::Error| format!("{}: not a coevo checkpoint: {e}", path.display());
        // The format tag first, so an older checkpoint is named as such rather than as a
        // missing field.
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(not_ours)?;
        let format = value.get("format").and_then(|f| f.as_str()).unwrap_or("(none)");
        if format != FORMAT {
            return Err(format!(
                "{}: checkpoint format `{format}`, this coevo reads `{FORMAT}` (a checkpoint of an older coevo cannot be resumed: rerun the scenario)",
                path.display()
            ));
        }
        let c: Checkpoint = serde_json::from_value(value).map_err(not_ours)?;
        let corrupt = |why: String| format!("{}: corrupt checkpoint: {why}; it cannot be resumed (rerun the scenario)", path.display());
        match &c.sha256 {
            None => return Err(corrupt("it has no sha256 checksum".into())),
            Some(sum) if *sum != c.content_sha256() => {
                return Err(corrupt(format!("its content does not match its sha256 checksum {sum} (the file was changed or damaged)")));
            }
            Some(_) => {}
        }
        c.check_fields().map_err(corrupt)?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f64_lists_round_trip_bit_for_bit() {
        let v = [0.1, -0.0, f64::NAN, f64::INFINITY, f64::MIN_POSITIVE / 3.0, 1e300];
        let back = decode_f64s(&encode_f64s(&v)).unwrap();
        assert!(v.iter().zip(&back).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(decode_f64s("abc").is_err());
    }

    #[test]
    fn byte_strings_round_trip() {
        let b: Vec<u8> = (0..=255).collect();
        assert_eq!(decode_bytes(&encode_bytes(&b)).unwrap(), b);
        assert_eq!(encode_bytes(&[0x0f, 0xa0]), "0fa0");
        assert!(decode_bytes("abc").is_err() && decode_bytes("zz").is_err());
    }
}
