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
                // A custom message of a value's own deserializer (a schedule that fits no form).
                | E::Message(_)
        );
        let field = if value_error { field_before(source, line, col) } else { None };
        let for_field = field.as_ref().map_or_else(String::new, |f| format!("`{f}` "));
        let offset = byte_offset(source, line, col);
        // A value error inside an entity names the entity and the field, as semantic errors do.
        let mut message = e.code.to_string();
        if let (Some(f), Some(entity)) = (&field, entity_at(source, offset)) {
            message = format!("{}.{f}: {message}", entity.path());
        }
        // Fields written without their names in a struct-like variant (`Fresh(0.1)`): the parser
        // asks for an identifier (and suggests a raw one); say which fields the variant takes.
        if matches!(e.code, E::SuggestRawIdentifier(_) | E::ExpectedIdentifier)
            && let Some(variant) = variant_at(source, offset)
            && let Some(fields) = variant_fields(&variant)
        {
            let list = fields.iter().map(|f| format!("{f}: ...")).collect::<Vec<_>>().join(", ");
            let message = format!("`{variant}` takes named fields: write `{variant}({list})`");
            let hint = Some(match example(&variant) {
                Some(e) => format!("`{variant}` takes `({list})`, e.g. `{e}`"),
                None => format!("`{variant}` takes `({list})`: write each field's name before its value"),
            });
            return ScenarioError::Syntax { file: file.to_path_buf(), line, col, message, hint };
        }
        if let E::SuggestRawIdentifier(found) = &e.code {
            // Not inside a known struct-like variant: still no parser internals.
            message = format!("expected a field name, found `{found}`");
        }
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
        ScenarioError::Syntax { file: file.to_path_buf(), line, col, message, hint }
    }
}

/// Byte offset of 1-based `line:col` (col counted in characters) in `source`.
fn byte_offset(source: &str, line: usize, col: usize) -> usize {
    let line_start: usize = source.split_inclusive('\n').take(line.saturating_sub(1)).map(str::len).sum();
    source.get(line_start..).and_then(|rest| rest.char_indices().nth(col.saturating_sub(1))).map_or(source.len(), |(i, _)| line_start + i)
}

/// `source` with string literals and comments blanked out (every byte of them replaced by a
/// space, newlines kept), so that byte offsets are unchanged and brackets, colons and keys
/// inside strings or comments are not taken for structure.
fn blank_strings_and_comments(source: &str) -> String {
    let mut cleaned = String::with_capacity(source.len());
    let (mut in_string, mut in_line_comment, mut block_depth, mut escaped) = (false, false, 0usize, false);
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        let keep = if in_line_comment {
            in_line_comment = c != '\n';
            c == '\n'
        } else if block_depth > 0 {
            if c == '*' && chars.peek() == Some(&'/') {
                chars.next();
                cleaned.push_str("  ");
                block_depth -= 1;
                continue;
            }
            if c == '/' && chars.peek() == Some(&'*') {
                chars.next();
                cleaned.push_str("  ");
                block_depth += 1;
                continue;
            }
            c == '\n'
        } else if in_string {
            in_string = escaped || c != '"';
            escaped = !escaped && c == '\\';
            false
        } else if c == '"' {
            in_string = true;
            false
        } else if c == '/' && chars.peek() == Some(&'/') {
            in_line_comment = true;
            false
        } else if c == '/' && chars.peek() == Some(&'*') {
            chars.next();
            cleaned.push_str("  ");
            block_depth = 1;
            continue;
        } else {
            true
        };
        if keep {
            cleaned.push(c);
        } else {
            cleaned.extend(std::iter::repeat_n(' ', c.len_utf8()));
        }
    }
    cleaned
}

/// The identifier written immediately before byte `at` of `cleaned` (spaces skipped).
fn identifier_before(cleaned: &str, at: usize) -> &str {
    let head = cleaned[..at].trim_end();
    let start = head.rfind(|c: char| !(c.is_alphanumeric() || c == '_')).map_or(0, |i| i + 1);
    &head[start..]
}

/// The `(` or `[` that encloses byte `at` of `cleaned`, if any.
fn enclosing_open(cleaned: &str, at: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in cleaned[..at].char_indices().rev() {
        match c {
            ')' | ']' => depth += 1,
            '(' | '[' if depth == 0 => return Some(i),
            '(' | '[' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The `)` or `]` that closes the bracket opened at byte `open` of `cleaned` (or the end).
fn matching_close(cleaned: &str, open: usize) -> usize {
    let mut depth = 0usize;
    for (i, c) in cleaned[open..].char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => {
                depth -= 1;
                if depth == 0 {
                    return open + i;
                }
            }
            _ => {}
        }
    }
    cleaned.len()
}

/// One entity as written in the `entities: [...]` list of a scenario file.
#[derive(Debug, Clone, PartialEq)]
struct EntitySpan {
    /// Position in the list.
    index: usize,
    /// The variant written (`TextModel`, ...).
    kind: String,
    /// Its `name:` value, when written as a plain string.
    name: Option<String>,
    /// Byte range of its parentheses, `(` to `)`.
    open: usize,
    close: usize,
}

impl EntitySpan {
    /// The field path prefix used by every message, e.g. `entities[1] (ImageModel "painter")`.
    fn path(&self) -> String {
        match &self.name {
            Some(name) => format!("entities[{}] ({} \"{name}\")", self.index, self.kind),
            None => format!("entities[{}] ({})", self.index, self.kind),
        }
    }
}

/// The entities of the scenario's `entities: [...]` list, in order, found in the text (so
/// that a message can point at the entity even when the file does not parse).
fn entity_spans(source: &str) -> Vec<EntitySpan> {
    let cleaned = blank_strings_and_comments(source);
    let Some(scenario_open) = cleaned.find('(') else { return Vec::new() };
    let scenario_close = matching_close(&cleaned, scenario_open);
    let body = scenario_open + 1..scenario_close.min(cleaned.len());
    let Some(key) = find_key_at_depth(&cleaned, body, "entities") else { return Vec::new() };
    let Some(list_open) = cleaned[key..].find('[').map(|i| key + i) else { return Vec::new() };
    let list_close = matching_close(&cleaned, list_open);
    let mut spans = Vec::new();
    let mut at = list_open + 1;
    while at < list_close {
        let Some(open) = cleaned[at..list_close].find('(').map(|i| at + i) else { break };
        let kind = identifier_before(&cleaned, open).to_string();
        let close = matching_close(&cleaned, open);
        // Newtype variants may also be written with their inner parentheses: `TextModel((..))`.
        let inner = cleaned[open + 1..close].trim_start();
        let fields_open = if inner.starts_with('(') { cleaned[open + 1..].find('(').map_or(open, |i| open + 1 + i) } else { open };
        let name = find_key_at_depth(&cleaned, fields_open + 1..matching_close(&cleaned, fields_open), "name").and_then(|k| {
            let value = source[k..].split_once(':')?.1.trim_start();
            let value = value.strip_prefix('"')?;
            Some(value[..value.find('"')?].to_string())
        });
        spans.push(EntitySpan { index: spans.len(), kind, name, open, close });
        at = close + 1;
    }
    spans
}

/// The entity whose parentheses contain byte `offset` of `source`.
fn entity_at(source: &str, offset: usize) -> Option<EntitySpan> {
    entity_spans(source).into_iter().find(|s| s.open < offset && offset <= s.close)
}

/// The variant whose parentheses enclose byte `offset` of `source`: `Fresh` in `Fresh(0.1)`.
fn variant_at(source: &str, offset: usize) -> Option<String> {
    let cleaned = blank_strings_and_comments(source);
    let open = enclosing_open(&cleaned, offset.min(cleaned.len()))?;
    let name = identifier_before(&cleaned, open);
    name.starts_with(|c: char| c.is_ascii_uppercase()).then(|| name.to_string())
}

/// The named fields of the struct-like variant `variant` of any enum of the scenario format
/// that has one (`Fresh` -> `["lambda"]`), found by asking serde what the variant's
/// deserializer expects, so that a new struct-like variant needs no change here.
fn variant_fields(variant: &str) -> Option<&'static [&'static str]> {
    use serde::Deserialize;
    fn probe<'de, T: Deserialize<'de>>(variant: &str) -> Option<&'static [&'static str]> {
        let found = std::cell::Cell::new(None);
        let _ = T::deserialize(probe::Probe { variant, found: &found });
        found.get()
    }
    probe::<crate::models::DataPolicy>(variant)
        .or_else(|| probe::<super::Perturbation>(variant))
        .or_else(|| probe::<super::EntitySpec>(variant))
        .or_else(|| probe::<super::UserSource>(variant))
}

/// A hand-written example of `variant`, for hints: `Fresh(lambda: 0.2)`.
fn example(variant: &str) -> Option<&'static str> {
    const EXAMPLES: &[(&str, &str)] = &[
        ("Fresh", "Fresh(lambda: 0.2)"),
        ("Accumulate", "Accumulate(initial: 100)"),
        ("Augment", "Augment(lambda: 0.5)"),
        ("TextInitial", "TextInitial(model: \"captioner\", initial: Probabilities([0.24, 0.19, 0.19, 0.19, 0.19]))"),
        ("MeanShift", "MeanShift(model: \"painter\", text: 0, shift: [0.1, 0.0])"),
        ("CovarianceScale", "CovarianceScale(model: \"painter\", factor: 1.5)"),
    ];
    EXAMPLES.iter().find(|(v, _)| *v == variant).map(|(_, e)| *e)
}

/// A serde deserializer that answers nothing but records the fields a struct-like (or
/// newtype-of-struct) variant asks for.
mod probe {
    use std::cell::Cell;

    use serde::de::value::{Error, StrDeserializer};
    use serde::de::{self, DeserializeSeed, Error as _, IntoDeserializer, Visitor};

    pub(super) struct Probe<'a> {
        pub(super) variant: &'a str,
        pub(super) found: &'a Cell<Option<&'static [&'static str]>>,
    }

    pub(super) struct Fields<'a>(&'a Cell<Option<&'static [&'static str]>>);

    impl<'de> de::Deserializer<'de> for Probe<'_> {
        type Error = Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            Err(Error::custom("probe"))
        }
        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _: &'static str,
            variants: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Error> {
            if !variants.contains(&self.variant) {
                return Err(Error::custom("no such variant"));
            }
            visitor.visit_enum(self)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit unit_struct
            newtype_struct seq tuple tuple_struct map struct identifier ignored_any
        }
    }

    impl<'de, 'a> de::EnumAccess<'de> for Probe<'a> {
        type Error = Error;
        type Variant = Fields<'a>;
        fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Fields<'a>), Error> {
            let name: StrDeserializer<'_, Error> = self.variant.into_deserializer();
            Ok((seed.deserialize(name)?, Fields(self.found)))
        }
    }

    impl<'de> de::VariantAccess<'de> for Fields<'_> {
        type Error = Error;
        fn unit_variant(self) -> Result<(), Error> {
            Err(Error::custom("unit"))
        }
        fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, Error> {
            seed.deserialize(self)
        }
        fn tuple_variant<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value, Error> {
            Err(Error::custom("tuple"))
        }
        fn struct_variant<V: Visitor<'de>>(self, fields: &'static [&'static str], _: V) -> Result<V::Value, Error> {
            self.0.set(Some(fields));
            Err(Error::custom("recorded"))
        }
    }

    /// The payload of a newtype variant: records the fields if it is a struct.
    impl<'de> de::Deserializer<'de> for Fields<'_> {
        type Error = Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            Err(Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(self, _: &'static str, fields: &'static [&'static str], _: V) -> Result<V::Value, Error> {
            self.0.set(Some(fields));
            Err(Error::custom("recorded"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit unit_struct
            newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
}

/// The field whose value starts at or contains 1-based `line:col` of `source`: the last
/// `identifier:` before that point, outside string literals and comments. A best effort for
/// messages only.
fn field_before(source: &str, line: usize, col: usize) -> Option<String> {
    let offset = byte_offset(source, line, col);
    let cleaned = blank_strings_and_comments(source.get(..offset)?);
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

/// Longest text of a scenario (a name, a value) that a message echoes: longer ones are cut.
const MAX_SHOWN_CHARS: usize = 120;

/// `text` as a message shows it: quoted, control characters escaped (an escape sequence in a
/// received scenario must not drive the terminal that shows the error), and cut after
/// [`MAX_SHOWN_CHARS`] characters with how many were left out.
pub(crate) fn shown(text: &str) -> String {
    let mut out = String::from("\"");
    for (i, ch) in text.chars().enumerate() {
        if i == MAX_SHOWN_CHARS {
            out.push_str(&format!("\"... ({} more characters)", text.chars().count() - i));
            return out;
        }
        match ch {
            '"' => out.push_str("\\\""),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `message` with its control characters but newlines escaped, and each line cut after a
/// few thousand characters: what every scenario error shows, whatever the scenario held.
fn printable(message: &str) -> String {
    const MAX_LINE: usize = 4000;
    let mut out = String::with_capacity(message.len().min(1 << 16));
    for (n, line) in message.split('\n').enumerate() {
        if n > 0 {
            out.push('\n');
        }
        for (i, ch) in line.chars().enumerate() {
            if i == MAX_LINE {
                out.push_str(" ... (line cut)");
                break;
            }
            if ch.is_control() { out.extend(ch.escape_default()) } else { out.push(ch) }
        }
    }
    out
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
                    position: locate(source, p.entity.as_ref().map(|(i, name)| (*i, name.as_str())), &p.key),
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
            write!(f, "error: {}", printable(&e.to_string()))?;
        }
        Ok(())
    }
}

impl std::error::Error for ScenarioErrors {}

/// Finds where `key:` is written: among the fields of entity `entity` (its index in the
/// `entities` list and its name) when given, else among the scenario's own fields, else
/// anywhere. A best effort for semantic errors, which serde cannot locate: the error still
/// names the field path when this finds nothing.
fn locate(source: &str, entity: Option<(usize, &str)>, key: &str) -> Option<(usize, usize)> {
    let cleaned = blank_strings_and_comments(source);
    let offset = match entity {
        Some((index, name)) => {
            // The entity by its position in the list, checked against its name; the name alone
            // could be the scenario's own `name:` or another entity's wiring.
            let spans = entity_spans(source);
            let span = spans
                .iter()
                .find(|s| s.index == index && s.name.as_deref() == Some(name))
                .or_else(|| spans.iter().find(|s| s.name.as_deref() == Some(name)))?;
            let body = span.open + 1..span.close;
            find_key_at_depth(&cleaned, body.clone(), key).or_else(|| find_key_at_depth(&cleaned, body, "name")).unwrap_or(span.open)
        }
        None => {
            // A dotted path (`output.every`) is followed section by section; where a part is
            // not written (a default), the deepest section found is named.
            let mut body = cleaned.find('(').map_or(0..cleaned.len(), |open| open + 1..matching_close(&cleaned, open));
            let mut found = None;
            for part in key.split('.') {
                // `parameters[1]`: the field, then the second element of its list.
                let (name, index) = match part.split_once('[') {
                    Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
                    None => (part, None),
                };
                let Some(at) = find_key_at_depth(&cleaned, body.clone(), name) else { break };
                found = Some(at);
                let Some(open) = cleaned[at..].find(['(', '[']).map(|i| at + i) else { break };
                body = open + 1..matching_close(&cleaned, open);
                if let Some(i) = index {
                    let Some(element) = nth_element(&cleaned, body.clone(), i) else { break };
                    found = Some(element);
                    body = element + 1..matching_close(&cleaned, element);
                }
            }
            found.or_else(|| find_key(&cleaned, key))?
        }
    };
    let line = source[..offset].matches('\n').count() + 1;
    let col = source[source[..offset].rfind('\n').map_or(0, |i| i + 1)..offset].chars().count() + 1;
    Some((line, col))
}

/// Position of `key:` within byte range `range` of `cleaned`, at bracket depth 0 of that range
/// (a field of the value the range is the inside of, not of a nested one).
fn find_key_at_depth(cleaned: &str, range: std::ops::Range<usize>, key: &str) -> Option<usize> {
    let region = cleaned.get(range.clone())?;
    let mut depth = 0i64;
    let mut depths = Vec::with_capacity(region.len());
    for c in region.bytes() {
        depths.push(depth);
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ => {}
        }
    }
    region.match_indices(key).map(|(i, _)| i).find(|&i| depths[i] == 0 && is_key_at(region, i, key)).map(|i| range.start + i)
}

/// Position of the `(` of the `index`-th parenthesised element of a list whose inside is byte
/// range `range` of `cleaned`.
fn nth_element(cleaned: &str, range: std::ops::Range<usize>, index: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut seen = 0usize;
    for (i, c) in cleaned.get(range.clone())?.char_indices() {
        match c {
            '(' | '[' => {
                if depth == 0 && c == '(' {
                    if seen == index {
                        return Some(range.start + i);
                    }
                    seen += 1;
                }
                depth += 1;
            }
            ')' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Whether `key` at byte `i` of `region` is a whole word followed by optional spaces and `:`.
fn is_key_at(region: &str, i: usize, key: &str) -> bool {
    let before_ok = region[..i].chars().next_back().is_none_or(|c| !c.is_alphanumeric() && c != '_');
    before_ok && region[i + key.len()..].trim_start().starts_with(':')
}

/// Position of `key` followed by optional spaces and `:`, as a whole word.
fn find_key(region: &str, key: &str) -> Option<usize> {
    region.match_indices(key).map(|(i, _)| i).find(|&i| is_key_at(region, i, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_a_field_inside_the_named_entity() {
        let src = "Scenario(\n  entities: [\n    TextModel(name: \"a\", batch: 1),\n    TextModel(\n      name: \"b\",\n      batch: 0,\n    ),\n  ],\n)";
        assert_eq!(locate(src, Some((1, "b")), "batch"), Some((6, 7)));
        assert_eq!(locate(src, Some((0, "a")), "batch"), Some((3, 26)));
        assert_eq!(locate(src, None, "entities"), Some((2, 3)));
        let src = "Scenario(\n  sweep: Sweep(design: Random(4), parameters: [\n    (path: \"a\", min: 0, max: 1),\n    (path: \"b\",\n     min: 2, max: 1),\n  ]),\n)";
        assert_eq!(locate(src, None, "sweep.parameters[1].max"), Some((5, 14)));
        assert_eq!(locate(src, None, "sweep.parameters[0]"), Some((3, 5)));
        assert_eq!(locate(src, None, "sweep.design"), Some((2, 16)));
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
