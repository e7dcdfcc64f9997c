//! Parameter sweeps: the `sweep` section of a scenario, and how a grid point becomes a
//! scenario.
//!
//! A sweep lists parameters, each addressed by a path (`"painter.covariance"`,
//! `"captioner.data.lambda"`, `"seed"`) or by entity and field, with a grid of values. Every
//! combination of values is one **point**; points are numbered in row-major order (the first
//! parameter varies slowest, the last fastest).
//!
//! A value is applied generically, without knowing the entity kinds: the scenario is
//! serialised to a `serde_json::Value`, the field is set, and the value is deserialised back
//! into a [`Scenario`] and validated again. A new entity kind is therefore sweepable as soon
//! as it is in the schema. Two conveniences keep grids short:
//! - inside an enum field, a path segment may name a field of the variant's payload
//!   (`captioner.data.lambda` reaches `Fresh(lambda: ..)`);
//! - a number swept onto an enum variant with one numeric payload replaces the payload
//!   (`painter.covariance: 0.05` turns `Isotropic(0.1)` into `Isotropic(0.05)`,
//!   `painter.allocation: 50` turns `Fixed(100)` into `Fixed(50)`);
//! - a number swept onto a scheduled parameter (docs/model.md section 12) replaces the whole
//!   schedule with that constant (`inject.alpha: 0.5` turns `Steps([(1, 0.0), (500, 1.0)])`
//!   into `0.5`); a window's rounds are fields like any other (`inject.active.from`).
//!
//! A string value replaces the field whole (a unit variant such as `"Unbiased"`).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use super::design::{Design, DesignPoints, DesignTable, MAX_POINTS};
use super::{Problem, Scenario};
use crate::models::schedule::SCHEDULE_VARIANTS;

/// The `sweep` section of a scenario.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    /// How the points are chosen (default `Grid`, the Cartesian product of the values).
    #[serde(default, skip_serializing_if = "Design::is_grid")]
    pub design: Design,
    /// The swept parameters: with `values` for `Grid` and `Zip`, with a range (`min`, `max`)
    /// for the sampled designs; none for `Table` (the file's header names them).
    #[serde(default)]
    pub parameters: Vec<SweepParameter>,
    /// The points of a `Table` design, read when the scenario file is loaded (not part of the
    /// file format).
    #[serde(skip)]
    pub table: Option<Arc<DesignTable>>,
}

/// One swept parameter: where it is and which values it takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepParameter {
    /// Dotted path: an entity name then fields (`"painter.covariance"`), or a top-level field
    /// (`"seed"`, `"rounds"`, `"collapse.text_gini"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Entity name (instead of `path`, with `field`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    /// Field inside the entity (may itself be dotted), or a top-level field without `entity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The values (`Grid`, `Zip`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<SweepValue>,
    /// Lower end of the range a sampled design draws from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Upper end of the range a sampled design draws from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Draw on a logarithmic scale (uniform in `ln x`); needs `min > 0`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub log: bool,
}

/// One value of a grid: a number, a boolean or a string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SweepValue {
    /// `true` / `false`.
    Bool(bool),
    /// A non-negative integer.
    Unsigned(u64),
    /// A negative integer.
    Signed(i64),
    /// A floating-point number.
    Float(f64),
    /// A string (a unit enum variant such as `"Unbiased"`, or a name).
    Text(String),
}

impl SweepValue {
    fn to_json(&self) -> Value {
        match self {
            SweepValue::Bool(b) => Value::Bool(*b),
            SweepValue::Unsigned(u) => Value::from(*u),
            SweepValue::Signed(i) => Value::from(*i),
            // Validation rejects non-finite values before they get here.
            SweepValue::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            SweepValue::Text(s) => Value::String(s.clone()),
        }
    }
}

impl fmt::Display for SweepValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SweepValue::Bool(b) => write!(f, "{b}"),
            SweepValue::Unsigned(u) => write!(f, "{u}"),
            SweepValue::Signed(i) => write!(f, "{i}"),
            SweepValue::Float(x) => write!(f, "{}", crate::metrics::format_value(*x)),
            SweepValue::Text(s) => write!(f, "{s}"),
        }
    }
}

impl SweepParameter {
    /// The parameter's dotted path (also its column name in `sweep.csv`).
    pub fn path(&self) -> String {
        match (&self.path, &self.entity, &self.field) {
            (Some(p), _, _) => p.clone(),
            (None, Some(e), Some(f)) => format!("{e}.{f}"),
            (None, Some(e), None) => e.clone(),
            (None, None, Some(f)) => f.clone(),
            (None, None, None) => String::new(),
        }
    }
}

impl Sweep {
    /// Number of points of the design: the product of the grid sizes (`Grid`), the common
    /// number of values (`Zip`), `n` (`Random`, `LatinHypercube`), `n (k + 2)` (`Sobol`, `k`
    /// parameters) or the rows of the file (`Table`, 0 until it is read). Saturates instead of
    /// overflowing, so that a huge grid is refused by the cap rather than wrapped.
    pub fn len(&self) -> usize {
        let k = self.parameters.len();
        match &self.design {
            Design::Grid => self.parameters.iter().fold(1usize, |n, p| n.saturating_mul(p.values.len())),
            Design::Zip => self.parameters.first().map_or(0, |p| p.values.len()),
            Design::Random(n) | Design::LatinHypercube(n) => usize::try_from(*n).unwrap_or(usize::MAX),
            Design::Sobol(n) => usize::try_from(*n).unwrap_or(usize::MAX).saturating_mul(k + 2),
            Design::Table(_) => self.table.as_ref().map_or(0, |t| t.rows.len()),
        }
    }

    /// Whether the design has no point.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The swept parameter paths, in column order (a `Table`'s from its header).
    pub fn paths(&self) -> Vec<String> {
        match (&self.design, &self.table) {
            (Design::Table(_), Some(t)) => t.columns.clone(),
            _ => self.parameters.iter().map(SweepParameter::path).collect(),
        }
    }
}

/// Applies `(path, value)` assignments to `base` and validates the result. The returned
/// scenario has no sweep section. Errors name the path and say what would be valid.
pub fn apply(base: &Scenario, assignments: &[(String, SweepValue)]) -> Result<Scenario, String> {
    let mut stripped = base.clone();
    stripped.sweep = None;
    stripped.search = None;
    let mut root = serde_json::to_value(&stripped).expect("a scenario serialises to JSON");
    for (path, value) in assignments {
        set(&mut root, path, value)?;
    }
    let describe =
        |assignments: &[(String, SweepValue)]| assignments.iter().map(|(p, v)| format!("{p} = {v}")).collect::<Vec<_>>().join(", ");
    let mut point: Scenario =
        serde_json::from_value(root).map_err(|e| format!("{}: the value does not fit the field: {e}", describe(assignments)))?;
    point.carry_hosted(base);
    super::validate(&point).map_err(|problems| {
        let list: Vec<String> = problems.iter().map(|p| format!("{}: {}", p.path(), p.message)).collect();
        format!("{} makes the scenario invalid: {}", describe(assignments), list.join("; "))
    })?;
    Ok(point)
}

/// Top-level fields a sweep may not set: they are structure, not parameters.
const STRUCTURAL: [&str; 5] = ["entities", "sweep", "search", "output", "name"];

/// The field at `path` of a serialised scenario (looking through enum variants), or why there
/// is none, naming the valid fields.
fn slot<'a>(root: &'a mut Value, path: &str) -> Result<&'a mut Value, String> {
    let segments: Vec<&str> = path.split('.').collect();
    if segments.iter().any(|s| s.trim().is_empty()) {
        return Err(format!("parameter path {path:?} is malformed: write `entity.field` or a top-level field such as `seed`"));
    }
    let entity_names: Vec<String> = root["entities"]
        .as_array()
        .map(|a| {
            a.iter().filter_map(|e| variant_payload(e).and_then(|p| p.get("name")).and_then(Value::as_str)).map(String::from).collect()
        })
        .unwrap_or_default();
    let top_fields: Vec<String> =
        root.as_object().map(|o| o.keys().filter(|k| !STRUCTURAL.contains(&k.as_str())).cloned().collect()).unwrap_or_default();
    let (mut current, rest, mut context) = if let Some(i) = entity_names.iter().position(|n| n == segments[0]) {
        if segments.len() == 1 {
            return Err(format!(
                "parameter path `{path}` names the entity `{}` but no field of it; write `{}.FIELD`",
                segments[0], segments[0]
            ));
        }
        let entity = root["entities"].get_mut(i).and_then(variant_payload_mut).expect("listed above");
        (entity, &segments[1..], format!("entity `{}`", segments[0]))
    } else if top_fields.iter().any(|f| f == segments[0]) {
        (root, &segments[..], "the scenario".to_string())
    } else {
        return Err(format!(
            "unknown parameter path `{path}`: `{}` is neither an entity ({}) nor a sweepable top-level field ({})",
            segments[0],
            quoted(&entity_names),
            quoted(&top_fields)
        ));
    };
    for seg in rest {
        if !has_field(current, seg) {
            return Err(format!(
                "unknown parameter path `{path}`: {context} has no field `{seg}`; its fields: {}",
                quoted(&fields_of(current))
            ));
        }
        current = descend(current, seg).expect("checked above");
        context = format!("field `{seg}`");
    }
    Ok(current)
}

/// Whether the field at `path` of `base` holds a whole number (a count such as `batch`, a seed,
/// or the payload of `Fixed(100)`): a sampled design then draws whole numbers for it.
pub fn is_integer(base: &Scenario, path: &str) -> Result<bool, String> {
    let mut stripped = base.clone();
    stripped.sweep = None;
    stripped.search = None;
    let mut root = serde_json::to_value(&stripped).expect("a scenario serialises to JSON");
    let whole = |v: &Value| v.as_number().is_some_and(|n| !n.is_f64());
    Ok(match slot(&mut root, path)? {
        Value::Object(o) if o.len() == 1 => o.values().next().is_some_and(whole),
        v => whole(v),
    })
}

/// Sets the field at `path` of a serialised scenario to `value`.
fn set(root: &mut Value, path: &str, value: &SweepValue) -> Result<(), String> {
    let current = slot(root, path)?;
    let new = value.to_json();
    match current {
        // A schedule (`{"Steps": ..}`, `{"Ramp": ..}`): a number makes it that constant.
        Value::Object(o) if o.len() == 1 && new.is_number() && SCHEDULE_VARIANTS.iter().any(|v| o.contains_key(*v)) => *current = new,
        // An enum variant with one scalar payload (`Isotropic(0.1)`, `Fixed(100)`): a number
        // replaces the payload.
        Value::Object(o) if o.len() == 1 && new.is_number() => {
            let payload = o.values_mut().next().expect("one entry");
            if payload.is_number() {
                *payload = new;
            } else {
                let variant = o.keys().next().expect("one entry").clone();
                return Err(format!(
                    "parameter `{path}` is `{variant}(..)`, which has no single numeric value to replace; sweep one of its fields instead ({})",
                    quoted(&fields_of(o.values().next().expect("one entry")))
                ));
            }
        }
        Value::Object(_) | Value::Array(_) if !matches!(new, Value::String(_)) => {
            return Err(format!("parameter `{path}` is a compound value; sweep one of its numeric fields, or a variant name as a string"));
        }
        slot => *slot = new,
    }
    Ok(())
}

/// Whether `v` has field `seg`, directly or in its enum variant's payload.
fn has_field(v: &Value, seg: &str) -> bool {
    let has = |v: &Value| v.as_object().is_some_and(|o| o.contains_key(seg));
    has(v) || variant_payload(v).is_some_and(has)
}

/// Descends into field `seg` of `v`, looking through an enum variant wrapper if needed.
fn descend<'a>(v: &'a mut Value, seg: &str) -> Option<&'a mut Value> {
    if v.as_object().is_some_and(|o| o.contains_key(seg)) {
        return v.get_mut(seg);
    }
    variant_payload_mut(v).and_then(|p| p.get_mut(seg))
}

/// The payload of an externally tagged enum variant `{"Variant": payload}`.
fn variant_payload(v: &Value) -> Option<&Value> {
    v.as_object().filter(|o| o.len() == 1).and_then(|o| o.values().next())
}

fn variant_payload_mut(v: &mut Value) -> Option<&mut Value> {
    v.as_object_mut().filter(|o| o.len() == 1).and_then(|o| o.values_mut().next())
}

/// The field names reachable from `v` (its own, or its variant payload's).
fn fields_of(v: &Value) -> Vec<String> {
    match v.as_object() {
        Some(o) if o.len() == 1 && o.values().next().is_some_and(Value::is_object) => fields_of(o.values().next().expect("one entry")),
        Some(o) => o.keys().cloned().collect(),
        None => Vec::new(),
    }
}

fn quoted(names: &[String]) -> String {
    if names.is_empty() { "none".to_string() } else { names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ") }
}

/// Problems of a scenario's sweep section (an empty grid, an unknown path, a value that makes
/// the scenario invalid, a range or a design size that cannot be), for
/// [`crate::scenario::validate`]. New problems are keyed by where they are written
/// (`sweep.parameters[1].min`), so that the error points at the line.
pub fn check(scenario: &Scenario) -> Vec<Problem> {
    let Some(sweep) = &scenario.sweep else { return Vec::new() };
    let mut problems = Vec::new();
    let mut fail_at = |key: String, message: String| problems.push(Problem { entity: None, kind: "", key, message });
    let design = &sweep.design;
    if let Design::Table(file) = design {
        if !sweep.parameters.is_empty() {
            fail_at(
                "sweep.parameters".into(),
                format!("a Table design takes its parameters from the header of {file:?}; remove `parameters`"),
            );
        }
        if file.trim().is_empty() {
            fail_at("sweep.design".into(), "Table needs a CSV file, e.g. Table(\"points.csv\") (relative to the scenario file)".into());
        }
        return problems;
    }
    if sweep.parameters.is_empty() {
        fail_at(
            "sweep".into(),
            "the sweep lists no parameter: give at least one, e.g. (path: \"captioner.batch\", values: [100, 1000])".into(),
        );
    }
    if let Some(n) = design.size() {
        if n == 0 {
            fail_at("sweep.design".into(), format!("{} needs at least one point: write e.g. {}", design.label(), design.example()));
        }
        if let Err(e) = design.fits(sweep.parameters.len()) {
            fail_at("sweep.design".into(), e);
        }
    }
    if sweep.len() > MAX_POINTS {
        fail_at(
            "sweep.design".into(),
            format!(
                "the sweep has {} points, more than the {MAX_POINTS} a sweep may have; use fewer values or a sampled design",
                sweep.len()
            ),
        );
    }
    let sampled = design.size().is_some();
    let mut seen = Vec::new();
    for (i, p) in sweep.parameters.iter().enumerate() {
        let label = format!("sweep parameter [{i}]");
        let key = |field: &str| format!("sweep.parameters[{i}]{field}");
        if p.path.is_some() && (p.entity.is_some() || p.field.is_some()) {
            fail_at(key(""), format!("{label}: give either `path` or `entity`/`field`, not both"));
            continue;
        }
        if p.path.is_none() && p.field.is_none() {
            fail_at(key(""), format!("{label}: no `path` (e.g. \"painter.batch\") or `field` given"));
            continue;
        }
        let path = p.path();
        if seen.contains(&path) {
            fail_at(key(""), format!("{label}: `{path}` is swept twice; list all its values in one parameter"));
            continue;
        }
        seen.push(path.clone());
        if sampled {
            for problem in check_range(scenario, design, i, p) {
                fail_at(problem.key, problem.message);
            }
            continue;
        }
        if p.min.is_some() || p.max.is_some() || p.log {
            let what = design.label();
            fail_at(
                key(""),
                format!(
                    "{label} `{path}`: a {what} design takes `values`, not a range (`min`, `max`, `log`); a range needs a sampled design: Random(n), LatinHypercube(n) or Sobol(n)"
                ),
            );
            continue;
        }
        if p.values.is_empty() {
            fail_at(key(".values"), format!("{label} `{path}` has an empty grid: list at least one value"));
            continue;
        }
        if *design == Design::Zip {
            let first = &sweep.parameters[0];
            if p.values.len() != first.values.len() {
                fail_at(
                    key(".values"),
                    format!(
                        "Zip pairs the values index by index, so every parameter needs as many: `{}` has {}, `{path}` has {}",
                        first.path(),
                        first.values.len(),
                        p.values.len()
                    ),
                );
            }
        }
        for v in &p.values {
            if let SweepValue::Float(x) = v
                && !x.is_finite()
            {
                fail_at(key(".values"), format!("{label} `{path}`: value {x} is not a finite number"));
                continue;
            }
            if let Err(e) = apply(scenario, &[(path.clone(), v.clone())]) {
                // One message per parameter is enough when the path itself is wrong.
                let wrong_path = e.starts_with("unknown parameter path") || e.contains("malformed");
                fail_at(key(""), e);
                if wrong_path {
                    break;
                }
            }
        }
    }
    problems
}

/// Problems of parameter `i`'s range in a sampled design: `values` given instead, `min` or
/// `max` missing, not finite, not increasing, not positive on a log scale, not whole for an
/// integer field, or an end that makes the scenario invalid.
fn check_range(scenario: &Scenario, design: &Design, i: usize, p: &SweepParameter) -> Vec<Problem> {
    let mut problems = Vec::new();
    let path = p.path();
    let mut fail = |field: &str, message: String| {
        problems.push(Problem {
            entity: None,
            kind: "",
            key: format!("sweep.parameters[{i}]{field}"),
            message: format!("`{path}`: {message}"),
        })
    };
    if !p.values.is_empty() {
        fail(
            ".values",
            format!(
                "a {} design draws from a range: write `min: .., max: ..` (and `log: true` for a log scale) instead of `values`",
                design.label()
            ),
        );
        return problems;
    }
    let (Some(min), Some(max)) = (p.min, p.max) else {
        let missing = if p.min.is_none() { ".min" } else { ".max" };
        fail("", format!("a {} design needs a range: write `min: .., max: ..`; `{}` is missing", design.label(), &missing[1..]));
        return problems;
    };
    for (field, x) in [(".min", min), (".max", max)] {
        if !x.is_finite() {
            fail(field, format!("{x} is not a finite number"));
            return problems;
        }
    }
    if min >= max {
        fail(".max", format!("the range needs min < max, got min = {min}, max = {max}"));
        return problems;
    }
    if p.log && min <= 0.0 {
        fail(".min", format!("a log scale needs min > 0, got {min}"));
        return problems;
    }
    let integer = match is_integer(scenario, &path) {
        Ok(b) => b,
        Err(e) => {
            fail("", e);
            return problems;
        }
    };
    if integer && (min.fract() != 0.0 || max.fract() != 0.0) {
        fail(".min", format!("the field takes whole numbers, so the range needs whole ends, got min = {min}, max = {max}"));
        return problems;
    }
    for (field, x) in [(".min", min), (".max", max)] {
        let value = super::design::value(x, integer);
        if let Err(e) = apply(scenario, &[(path.clone(), value)]) {
            fail(field, e);
            return problems;
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Covariance, EntitySpec};
    use std::path::Path;

    const BASE: &str = r#"Scenario(name: "s", rounds: 3, entities: [
        TextModel(name: "captioner", data: Fresh(lambda: 0.1)),
        ImageModel(name: "painter", conditioned_on: "captioner", allocation: Fixed(100)),
        Temperature(name: "heat", target: "captioner", t: 1.0),
    ])"#;

    fn base() -> Scenario {
        Scenario::parse(BASE, Path::new("base.ron")).unwrap()
    }

    fn one(path: &str, v: SweepValue) -> Result<Scenario, String> {
        apply(&base(), &[(path.to_string(), v)])
    }

    #[test]
    fn sets_numeric_fields_of_every_kind_and_the_top_level() {
        let s = one("painter.covariance", SweepValue::Float(0.05)).unwrap();
        let EntitySpec::ImageModel(img) = &s.entities[1] else { panic!() };
        assert_eq!(img.covariance, Covariance::Isotropic(0.05));
        let s = one("painter.allocation", SweepValue::Unsigned(7)).unwrap();
        let EntitySpec::ImageModel(img) = &s.entities[1] else { panic!() };
        assert_eq!(img.allocation, crate::models::Allocation::Fixed(7));
        let s = one("captioner.data.lambda", SweepValue::Float(0.5)).unwrap();
        let EntitySpec::TextModel(t) = &s.entities[0] else { panic!() };
        assert_eq!(t.data, crate::models::DataPolicy::Fresh { lambda: 0.5.into() });
        let s = one("heat.t", SweepValue::Unsigned(2)).unwrap();
        let EntitySpec::Temperature(t) = &s.entities[2] else { panic!() };
        assert_eq!(t.t, 2.0.into());
        let s = one("painter.estimator", SweepValue::Text("Unbiased".into())).unwrap();
        let EntitySpec::ImageModel(img) = &s.entities[1] else { panic!() };
        assert_eq!(img.estimator, crate::models::Estimator::Unbiased);
        assert_eq!(one("seed", SweepValue::Unsigned(9)).unwrap().seed, 9);
        assert_eq!(one("collapse.text_gini", SweepValue::Float(0.2)).unwrap().collapse.text_gini, 0.2);
    }

    #[test]
    fn a_number_swept_onto_a_schedule_makes_it_constant_and_windows_sweep_by_field() {
        let src = r#"Scenario(name: "s", rounds: 3, entities: [
            TextModel(name: "captioner", data: Fresh(lambda: Ramp(from: (1, 0.0), to: (3, 0.5)))),
            CorpusInjector(name: "inject", target: "captioner", alpha: Steps([(1, 0.0), (2, 1.0)]), eps: 0.1,
                active: (from: 2)),
        ])"#;
        let base = Scenario::parse(src, Path::new("base.ron")).unwrap();
        let set = |path: &str, v: SweepValue| apply(&base, &[(path.to_string(), v)]);
        let s = set("inject.alpha", SweepValue::Float(0.5)).unwrap();
        let EntitySpec::CorpusInjector(inj) = &s.entities[1] else { panic!() };
        assert_eq!((inj.alpha.clone(), inj.active), (0.5.into(), Some(crate::scenario::Window { from: 2, until: None })));
        let s = set("captioner.data.lambda", SweepValue::Unsigned(1)).unwrap();
        let EntitySpec::TextModel(t) = &s.entities[0] else { panic!() };
        assert_eq!(t.data, crate::models::DataPolicy::Fresh { lambda: 1.0.into() });
        let s = set("inject.active.from", SweepValue::Unsigned(3)).unwrap();
        let EntitySpec::CorpusInjector(inj) = &s.entities[1] else { panic!() };
        assert_eq!(inj.active.map(|w| w.from), Some(3));
        // A swept value is validated like a written one.
        let e = set("inject.alpha", SweepValue::Float(1.5)).unwrap_err();
        assert!(e.contains("alpha = 1.5") && e.contains("[0, 1]"), "{e}");
        let e = set("inject.active.from", SweepValue::Unsigned(0)).unwrap_err();
        assert!(e.contains("rounds count from 1"), "{e}");
    }

    #[test]
    fn bad_paths_and_values_say_what_is_valid() {
        let e = one("painter.batchh", SweepValue::Unsigned(1)).unwrap_err();
        assert!(e.contains("no field `batchh`") && e.contains("`batch`"), "{e}");
        let e = one("ghost.batch", SweepValue::Unsigned(1)).unwrap_err();
        assert!(e.contains("`captioner`") && e.contains("`seed`"), "{e}");
        let e = one("captioner.batch", SweepValue::Unsigned(0)).unwrap_err();
        assert!(e.contains("batch size N must be at least 1"), "{e}");
        let e = one("captioner.batch", SweepValue::Float(0.5)).unwrap_err();
        assert!(e.contains("does not fit"), "{e}");
    }
}
