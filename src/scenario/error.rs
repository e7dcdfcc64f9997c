//! Errors that point at the place in the scenario file to fix.

use std::fmt;
use std::path::{Path, PathBuf};

use super::validate::Problem;

/// One thing wrong with a scenario.
#[derive(Debug, Clone, PartialEq)]
pub enum ScenarioError {
    /// The file could not be read.
    Io {
        /// The scenario file.
        file: PathBuf,
        /// The operating system's reason.
        message: String,
    },
    /// The file is not a well-formed scenario (RON syntax, unknown field, wrong type, ...).
    Syntax {
        /// The scenario file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// What the parser found and expected.
        message: String,
        /// What would be valid, where the parser's message does not already say it.
        hint: Option<String>,
    },
    /// The file parses but a value is invalid (a probability vector off the simplex, a
    /// covariance that is not positive semi-definite, a wiring name that does not exist, ...).
    Invalid {
        /// The scenario file.
        file: PathBuf,
        /// Where the field is written, when it can be found in the source.
        position: Option<(usize, usize)>,
        /// Path of the field, e.g. `entities[1] (ImageModel "painter").covariance`.
        field: String,
        /// What is wrong and what would be valid.
        message: String,
    },
}

impl ScenarioError {
    pub(crate) fn syntax(file: &Path, e: &ron::error::SpannedError) -> ScenarioError {
        use ron::Error as E;
        let hint = match &e.code {
            E::IntegerOutOfBounds => {
                Some("expected a non-negative integer: counts, sizes, rounds and seeds cannot be negative".to_string())
            }
            E::ExpectedDifferentStructName { .. } => Some("a scenario file holds one `Scenario( ... )` value".to_string()),
            E::ExpectedFloat | E::ExpectedInteger => Some("write numbers as RON literals, e.g. `0.1`, `1000`".to_string()),
            _ => None,
        };
        ScenarioError::Syntax {
            file: file.to_path_buf(),
            line: e.span.start.line,
            col: e.span.start.col,
            message: e.code.to_string(),
            hint,
        }
    }
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScenarioError::Io { file, message } => write!(f, "{}: cannot read scenario: {message}", file.display()),
            ScenarioError::Syntax { file, line, col, message, hint } => {
                write!(f, "{}:{line}:{col}: {message}", file.display())?;
                if let Some(h) = hint {
                    write!(f, "\n  hint: {h}")?;
                }
                Ok(())
            }
            ScenarioError::Invalid { file, position, field, message } => {
                match position {
                    Some((line, col)) => write!(f, "{}:{line}:{col}: ", file.display())?,
                    None => write!(f, "{}: ", file.display())?,
                }
                write!(f, "{field}: {message}")
            }
        }
    }
}

/// Every problem found in one scenario file (validation reports all of them at once).
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioErrors(pub Vec<ScenarioError>);

impl From<ScenarioError> for ScenarioErrors {
    fn from(e: ScenarioError) -> Self {
        ScenarioErrors(vec![e])
    }
}

impl ScenarioErrors {
    pub(crate) fn invalid(file: &Path, source: &str, problems: Vec<Problem>) -> Self {
        ScenarioErrors(
            problems
                .into_iter()
                .map(|p| ScenarioError::Invalid {
                    file: file.to_path_buf(),
                    position: locate(source, p.entity.as_ref().map(|(_, name)| name.as_str()), &p.key),
                    field: p.path(),
                    message: p.message,
                })
                .collect(),
        )
    }
}

impl fmt::Display for ScenarioErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ScenarioErrors {}

/// Finds where `key:` is written: inside the entity named `entity` when given (searching from
/// its `name: "..."` to the next `name:`), else anywhere. A best effort for semantic errors,
/// which serde cannot locate: the error still names the field path when this finds nothing.
fn locate(source: &str, entity: Option<&str>, key: &str) -> Option<(usize, usize)> {
    let (start, end) = match entity {
        Some(name) => {
            let quoted = format!("\"{name}\"");
            let at = source.match_indices(&quoted).map(|(i, _)| i).find(|&i| {
                source[..i].trim_end().ends_with(':') && source[..i].trim_end().trim_end_matches(':').trim_end().ends_with("name")
            })?;
            let name_key = source[..at].rfind("name").unwrap_or(at);
            let next = source[at..].find("name:").map_or(source.len(), |i| at + i);
            let open = source[..name_key].rfind('(').unwrap_or(0);
            (open, next.max(at))
        }
        None => (0, source.len()),
    };
    let region = &source[start..end];
    let offset = find_key(region, key).map(|i| start + i).or_else(|| entity.and_then(|name| source.find(&format!("\"{name}\""))))?;
    let line = source[..offset].matches('\n').count() + 1;
    let col = offset - source[..offset].rfind('\n').map_or(0, |i| i + 1) + 1;
    Some((line, col))
}

/// Position of `key` followed by optional spaces and `:`, as a whole word.
fn find_key(region: &str, key: &str) -> Option<usize> {
    region.match_indices(key).map(|(i, _)| i).find(|&i| {
        let before_ok = region[..i].chars().next_back().is_none_or(|c| !c.is_alphanumeric() && c != '_');
        let after = region[i + key.len()..].trim_start();
        before_ok && after.starts_with(':')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_a_field_inside_the_named_entity() {
        let src = "Scenario(\n  entities: [\n    TextModel(name: \"a\", batch: 1),\n    TextModel(\n      name: \"b\",\n      batch: 0,\n    ),\n  ],\n)";
        assert_eq!(locate(src, Some("b"), "batch"), Some((6, 7)));
        assert_eq!(locate(src, Some("a"), "batch"), Some((3, 26)));
        assert_eq!(locate(src, None, "entities"), Some((2, 3)));
    }
}
