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
    /// A parse error of `source`: located, and for a value of the wrong kind the hint names
    /// the field it was written for (the parser itself only says what it expected).
    pub(crate) fn syntax_in(file: &Path, source: &str, e: &ron::error::SpannedError) -> ScenarioError {
        use ron::Error as E;
        let (line, col) = (e.span.start.line, e.span.start.col);
        // Only value errors sit after a `field:`; for an unknown or missing field the nearest
        // key before the error is some other field, so naming it would mislead.
        let value_error = matches!(
            e.code,
            E::IntegerOutOfBounds
                | E::InvalidIntegerDigit { .. }
                | E::ExpectedInteger
                | E::ExpectedFloat
                | E::ExpectedString
                | E::ExpectedBoolean
                | E::ExpectedArray
                | E::ExpectedOption
                | E::ExpectedUnit
                | E::InvalidValueForType { .. }
        );
        let field = if value_error { field_before(source, line, col) } else { None };
        let for_field = field.map_or_else(String::new, |f| format!("`{f}` "));
        let hint = match &e.code {
            E::IntegerOutOfBounds | E::InvalidIntegerDigit { .. } => Some(format!(
                "{for_field}expects a non-negative whole number: counts, sizes, rounds and seeds cannot be negative or fractional"
            )),
            E::ExpectedDifferentStructName { .. } => Some("a scenario file holds one `Scenario( ... )` value".to_string()),
            E::ExpectedInteger => Some(format!("{for_field}expects a whole number written as a RON literal, e.g. `1000`")),
            E::ExpectedFloat => Some(format!("{for_field}expects a number written as a RON literal, e.g. `0.1`")),
            E::ExpectedString => Some(format!("{for_field}expects a quoted string, e.g. `\"captioner\"`")),
            E::ExpectedBoolean => Some(format!("{for_field}expects `true` or `false`")),
            E::ExpectedArray => Some(format!("{for_field}expects a list in square brackets, e.g. `[0.5, 0.5]`")),
            E::ExpectedUnit | E::ExpectedOption | E::InvalidValueForType { .. } if !for_field.is_empty() => {
                Some(format!("check the value written for {for_field}against the scenario format in the README"))
            }
            E::ExpectedComma | E::ExpectedStructLikeEnd | E::ExpectedArrayEnd | E::ExpectedMapEnd | E::Eof => Some(
                "a bracket or comma is missing at or before this point: entries are separated by `,` and every `(` and `[` \
                 needs its closing `)` or `]`"
                    .to_string(),
            ),
            E::TrailingCharacters => Some("the file must hold exactly one `Scenario( ... )` value; remove what follows it".to_string()),
            _ => None,
        };
        ScenarioError::Syntax { file: file.to_path_buf(), line, col, message: e.code.to_string(), hint }
    }
}

/// The field whose value starts at or contains 1-based `line:col` of `source`: the last
/// `identifier:` before that point, outside string literals and comments. A best effort for
/// messages only.
fn field_before(source: &str, line: usize, col: usize) -> Option<String> {
    let line_start: usize = source.split_inclusive('\n').take(line.saturating_sub(1)).map(str::len).sum();
    let offset = source[line_start..].char_indices().nth(col.saturating_sub(1)).map_or(source.len(), |(i, _)| line_start + i);
    let before = source.get(..offset)?;
    // Blank out strings and line comments so that a `:` inside them is not taken for a key.
    let mut cleaned = String::with_capacity(before.len());
    let (mut in_string, mut in_comment, mut escaped) = (false, false, false);
    let mut chars = before.chars().peekable();
    while let Some(c) = chars.next() {
        let keep = if in_comment {
            in_comment = c != '\n';
            c == '\n'
        } else if in_string {
            in_string = escaped || c != '"';
            escaped = !escaped && c == '\\';
            false
        } else if c == '"' {
            in_string = true;
            false
        } else if c == '/' && chars.peek() == Some(&'/') {
            in_comment = true;
            false
        } else {
            true
        };
        cleaned.push(if keep { c } else { ' ' });
    }
    let colon = cleaned.rfind(':')?;
    let key: String = cleaned[..colon].trim_end().chars().rev().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    (!key.is_empty()).then(|| key.chars().rev().collect())
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

    #[test]
    fn names_the_field_a_bad_value_was_written_for() {
        let src = "Scenario(\n  name: \"a: b\", // seed: 1\n  rounds: -3,\n)";
        assert_eq!(field_before(src, 3, 11).as_deref(), Some("rounds"));
        // Inside the string and after the comment: the colon in `"a: b"` is not a key.
        assert_eq!(field_before(src, 2, 12).as_deref(), Some("name"));
        assert_eq!(field_before(src, 1, 1), None);
    }
}
