//! Schedules (docs/model.md section 12): a parameter that may change over rounds.
//!
//! A scheduled parameter is written in a scenario as a plain number (constant: every existing
//! scenario reads and writes exactly as before), as piecewise-constant steps
//! `Steps([(1, 0.0), (500, 0.05)])` (each value holds from its round on) or as a linear ramp
//! `Ramp(from: (100, 0.0), to: (600, 0.1))`. Round `t` (counted from 1) uses the value at `t`.
//!
//! It lives with the models because a data policy ([`DataPolicy`](super::DataPolicy)) carries
//! one; the scenario re-exports it, and the world evaluates it at the current round.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

/// A number that may change over rounds.
///
/// What holds where no point says: a ramp holds its `from` value before its `from` round and
/// its `to` value after its `to` round; steps must start at round 0 or 1 (validated), so every
/// round has a stated value (round 0, the initial state, takes the first value).
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule<T> {
    /// The same value every round (written as the plain number).
    Constant(T),
    /// Piecewise constant: `(round, value)` points, rounds strictly increasing, each value
    /// holding from its round until the next point's.
    Steps(Vec<(u64, T)>),
    /// Linear between two `(round, value)` points (`from` round < `to` round), constant
    /// outside them.
    Ramp {
        /// The start of the ramp, and the value before it.
        from: (u64, T),
        /// The end of the ramp, and the value after it.
        to: (u64, T),
    },
}

/// The numbers a [`Schedule`] can carry: real parameters (`f64`) and counts (`u64`).
pub trait ScheduleValue: Copy + PartialEq + std::fmt::Display + std::fmt::Debug {
    /// `a + w (b - a)` for `w` in `[0, 1]`, in the type: a count is rounded to the nearest
    /// whole number (so a ramp of counts schedules counts, never a fraction of a sample).
    fn between(a: Self, b: Self, w: f64) -> Self;
}

impl ScheduleValue for f64 {
    fn between(a: f64, b: f64, w: f64) -> f64 {
        a + w * (b - a)
    }
}

impl ScheduleValue for u64 {
    fn between(a: u64, b: u64, w: f64) -> u64 {
        // Both ends are counts, so the rounded value lies between them: no negative result.
        (a as f64 + w * (b as f64 - a as f64)).round() as u64
    }
}

impl<T> From<T> for Schedule<T> {
    fn from(value: T) -> Self {
        Schedule::Constant(value)
    }
}

impl<T: Default> Default for Schedule<T> {
    fn default() -> Self {
        Schedule::Constant(T::default())
    }
}

/// Names of the written forms other than a plain number (for the sweep, which replaces a
/// scheduled field whole with a swept number).
pub const SCHEDULE_VARIANTS: [&str; 2] = ["Steps", "Ramp"];

impl<T: ScheduleValue> Schedule<T> {
    /// The value at round `round` (round 0 is the initial state; training rounds count from 1).
    ///
    /// Cheap: a constant is returned as is, steps are found by binary search, a ramp is one
    /// interpolation. A ramp's ends are returned exactly (`w` is never computed there).
    pub fn at(&self, round: u64) -> T {
        match self {
            Schedule::Constant(v) => *v,
            Schedule::Steps(points) => {
                // The last point at or before `round`; before the first point, the first value.
                let after = points.partition_point(|&(r, _)| r <= round);
                points[after.saturating_sub(1)].1
            }
            Schedule::Ramp { from: (r0, v0), to: (r1, v1) } => {
                if round <= *r0 {
                    *v0
                } else if round >= *r1 {
                    *v1
                } else {
                    T::between(*v0, *v1, (round - r0) as f64 / (r1 - r0) as f64)
                }
            }
        }
    }

    /// The declared `(round, value)` points (a constant: the value at round 1). Every value the
    /// schedule takes lies between two of them (steps take them exactly, a ramp interpolates),
    /// so a range that is an interval holds at every round when it holds at these.
    pub fn points(&self) -> Vec<(u64, T)> {
        match self {
            Schedule::Constant(v) => vec![(1, *v)],
            Schedule::Steps(points) => points.clone(),
            Schedule::Ramp { from, to } => vec![*from, *to],
        }
    }

    /// The value, if it is the same every round as written (a plain number).
    pub fn constant(&self) -> Option<T> {
        match self {
            Schedule::Constant(v) => Some(*v),
            _ => None,
        }
    }

    /// What is wrong with the shape of the schedule (not its values), if anything: steps that
    /// are empty, do not start at round 0 or 1, or whose rounds do not increase; a ramp whose
    /// `to` round is not after its `from` round.
    pub fn shape_problem(&self) -> Option<String> {
        match self {
            Schedule::Constant(_) => None,
            Schedule::Steps(points) => {
                let Some(&(first, v)) = points.first() else {
                    return Some("Steps([]) has no point; give at least one (round, value), e.g. Steps([(1, 0.0), (500, 0.1)])".into());
                };
                if first > 1 {
                    let missing = if first == 2 { "round 1 has".to_string() } else { format!("rounds 1 to {} have", first - 1) };
                    return Some(format!(
                        "Steps starts at round {first}, so {missing} no value: start with a point at round 0 or 1, \
                         e.g. Steps([(1, {v:?}), ...]) for the value before round {first}"
                    ));
                }
                points.windows(2).find(|w| w[1].0 <= w[0].0).map(|w| {
                    format!(
                        "Steps rounds must strictly increase, but round {} follows round {}; list the points in round order, each round once",
                        w[1].0, w[0].0
                    )
                })
            }
            Schedule::Ramp { from, to } => (to.0 <= from.0).then(|| {
                format!("Ramp ends at round {} but starts at round {}: the `to` round must be after the `from` round", to.0, from.0)
            }),
        }
    }
}

impl<T: Serialize> Serialize for Schedule<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            // A constant is the plain number: scenarios and manifests read as before schedules.
            Schedule::Constant(v) => v.serialize(serializer),
            Schedule::Steps(points) => serializer.serialize_newtype_variant("Schedule", 0, "Steps", points),
            Schedule::Ramp { from, to } => {
                use serde::ser::SerializeStructVariant;
                let mut s = serializer.serialize_struct_variant("Schedule", 1, "Ramp", 2)?;
                s.serialize_field("from", from)?;
                s.serialize_field("to", to)?;
                s.end()
            }
        }
    }
}

/// The written forms: a plain number, or one of the named shapes. Untagged, so a number needs
/// no wrapper; the shapes keep their names (RON `Steps(..)`, JSON `{"Steps": ..}`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Written<T> {
    Constant(T),
    Shaped(Shape<T>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
enum Shape<T> {
    Steps(Vec<(u64, T)>),
    Ramp { from: (u64, T), to: (u64, T) },
}

/// How a number of type `T`, and a schedule of them, are described in a message.
fn kind_of<T: 'static>() -> (&'static str, &'static str) {
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<u64>() {
        ("a whole number >= 0", "whole numbers")
    } else {
        ("a number", "numbers")
    }
}

impl<'de, T: Deserialize<'de> + 'static> Deserialize<'de> for Schedule<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // An untagged enum's own message ("did not match any variant") names no form; say
        // which forms are valid.
        let written = Written::<T>::deserialize(deserializer).map_err(|_| {
            let (one, many) = kind_of::<T>();
            de::Error::custom(format!(
                "expected {one} or a schedule of {many}: Steps([(round, value), ...]) or \
                 Ramp(from: (round, value), to: (round, value)), rounds being whole numbers"
            ))
        })?;
        Ok(match written {
            Written::Constant(v) => Schedule::Constant(v),
            Written::Shaped(Shape::Steps(points)) => Schedule::Steps(points),
            Written::Shaped(Shape::Ramp { from, to }) => Schedule::Ramp { from, to },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ron<T: for<'de> Deserialize<'de> + 'static>(s: &str) -> Result<Schedule<T>, String> {
        ron::from_str(s).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_every_form_and_writes_it_back() {
        assert_eq!(ron::<f64>("0.05").unwrap(), Schedule::Constant(0.05));
        assert_eq!(ron::<f64>("1").unwrap(), Schedule::Constant(1.0));
        let steps = ron::<f64>("Steps([(1, 0.0), (500, 0.05)])").unwrap();
        assert_eq!(steps, Schedule::Steps(vec![(1, 0.0), (500, 0.05)]));
        let ramp = ron::<u64>("Ramp(from: (100, 0), to: (600, 50))").unwrap();
        assert_eq!(ramp, Schedule::Ramp { from: (100, 0), to: (600, 50) });
        for s in [Schedule::Constant(0.25), steps] {
            assert_eq!(ron::<f64>(&ron::to_string(&s).unwrap()).unwrap(), s);
            assert_eq!(serde_json::from_str::<Schedule<f64>>(&serde_json::to_string(&s).unwrap()).unwrap(), s);
        }
        assert_eq!(ron::to_string(&Schedule::Constant(0.25)).unwrap(), "0.25");
        assert_eq!(serde_json::to_string(&ramp).unwrap(), r#"{"Ramp":{"from":[100,0],"to":[600,50]}}"#);
        assert_eq!(serde_json::from_str::<Schedule<u64>>(&serde_json::to_string(&ramp).unwrap()).unwrap(), ramp);
    }

    #[test]
    fn a_wrong_form_says_what_would_be_valid() {
        for bad in ["Stepz([(1, 0.0)])", "Steps([(1, \"a\")])", "Ramp(from: (1, 0.0))", "\"x\""] {
            let e = ron::<f64>(bad).unwrap_err();
            assert!(e.contains("Steps([(round, value), ...])") && e.contains("a number or a schedule"), "{bad}: {e}");
        }
        let e = ron::<u64>("0.5").unwrap_err();
        assert!(e.contains("a whole number >= 0"), "{e}");
    }

    #[test]
    fn values_at_rounds() {
        let steps = Schedule::Steps(vec![(1, 0.0), (500, 0.05), (900, 0.0)]);
        let expected = [(0, 0.0), (1, 0.0), (499, 0.0), (500, 0.05), (899, 0.05), (900, 0.0), (5000, 0.0)];
        for (t, v) in expected {
            assert_eq!(steps.at(t), v, "round {t}");
        }
        let ramp = Schedule::Ramp { from: (100, 0.0), to: (600, 0.1) };
        assert_eq!((ramp.at(0), ramp.at(100), ramp.at(600), ramp.at(10_000)), (0.0, 0.0, 0.1, 0.1));
        assert!((ramp.at(350) - 0.05).abs() < 1e-15);
        let counts = Schedule::Ramp { from: (0, 0u64), to: (4, 10) };
        assert_eq!((0..=4).map(|t| counts.at(t)).collect::<Vec<_>>(), vec![0, 3, 5, 8, 10]);
        let down = Schedule::Ramp { from: (0, 10u64), to: (4, 0) };
        assert_eq!((0..=4).map(|t| down.at(t)).collect::<Vec<_>>(), vec![10, 8, 5, 3, 0]);
    }

    #[test]
    fn shapes_that_leave_a_round_without_a_value_are_named() {
        assert!(Schedule::<f64>::Steps(vec![]).shape_problem().unwrap().contains("no point"));
        assert!(Schedule::Steps(vec![(2, 0.5)]).shape_problem().unwrap().contains("round 1 has no value"));
        assert!(Schedule::Steps(vec![(9, 0.5)]).shape_problem().unwrap().contains("rounds 1 to 8 have no value"));
        assert!(Schedule::Steps(vec![(0, 0.5), (5, 0.1), (5, 0.2)]).shape_problem().unwrap().contains("round 5 follows round 5"));
        assert!(Schedule::Ramp { from: (5, 0.0), to: (5, 1.0) }.shape_problem().unwrap().contains("after the `from` round"));
        assert_eq!(Schedule::Steps(vec![(0, 0.5), (5, 0.1)]).shape_problem(), None);
    }
}
