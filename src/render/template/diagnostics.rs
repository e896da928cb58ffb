//! Turning toml and serde errors into one line, `origin:line: what`: the line from the error's
//! span, the table in force there and the key whose value it is.

use std::fmt::Display;
use std::ops::Range;

use serde::de;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::error::Error;

/// Marks the message of a failed check of ours (see [`invalid`]), as opposed to serde's own.
const CHECK: &str = "\u{1}check\u{1}";

/// The error of a value that fails its check: `rest` follows the key, as in `" = 2 must lie in
/// [0, 1]"` or `": unbalanced brace …"`; the parser adds the value's span.
pub fn invalid<E: de::Error>(rest: impl Display) -> E {
    E::custom(format!("{CHECK}{rest}"))
}

/// The text being parsed, for placing errors.
pub struct Cx<'a> {
    pub text: &'a str,
    pub origin: &'a str,
    /// The parsed document, for the spans of keys (`None` if it does not parse).
    doc: Option<Spanned<DeTable<'a>>>,
}

impl<'a> Cx<'a> {
    pub fn new(text: &'a str, origin: &'a str) -> Self {
        Cx {
            text,
            origin,
            doc: DeTable::parse(text).ok(),
        }
    }

    /// `origin:line: [table] message` for a value at `span`.
    pub fn err(&self, span: &Range<usize>, message: impl AsRef<str>) -> Error {
        let line = line_of(self.text, span.start);
        let table = table_at(self.text, span.start);
        Error::InvalidArgument(format!(
            "{}:{line}: {} {}",
            self.origin,
            table,
            message.as_ref()
        ))
    }

    /// `origin: message`, for what has no line.
    pub fn whole(&self, message: impl Display) -> Error {
        Error::InvalidArgument(format!("{}: {message}", self.origin))
    }

    /// The span of the value at `table.key` (`index` picks an array of tables' element), or
    /// `0..0` where the file does not give it.
    pub fn span(&self, table: &str, index: Option<usize>, key: &str) -> Range<usize> {
        let Some(doc) = &self.doc else { return 0..0 };
        let Some(section) = find(doc.get_ref(), table) else {
            return 0..0;
        };
        let section = match (section.get_ref(), index) {
            (DeValue::Table(t), None) => Some(t),
            (DeValue::Array(a), Some(i)) => a.get(i).and_then(|v| v.get_ref().as_table()),
            _ => None,
        };
        section
            .and_then(|t| find(t, key))
            .map_or(0..0, |v| v.span())
    }

    /// The key whose value holds byte offset `at`, from the parsed document.
    fn key_holding(&self, at: usize) -> Option<String> {
        fn walk(t: &DeTable<'_>, at: usize) -> Option<String> {
            for (k, v) in t.iter() {
                match v.get_ref() {
                    DeValue::Table(inner) => {
                        if let Some(key) = walk(inner, at) {
                            return Some(key);
                        }
                    }
                    DeValue::Array(a) if a.iter().all(|e| e.get_ref().is_table()) => {
                        for e in a.iter() {
                            if let Some(key) = e.get_ref().as_table().and_then(|t| walk(t, at)) {
                                return Some(key);
                            }
                        }
                    }
                    _ if v.span().contains(&at) => return Some(k.get_ref().to_string()),
                    _ => {}
                }
            }
            None
        }
        walk(self.doc.as_ref()?.get_ref(), at)
    }

    /// Turns a TOML or serde error into one line: `origin:line: what, in [table], expected …`.
    pub fn explain(&self, e: &toml::de::Error) -> Error {
        Error::InvalidArgument(self.explain_line(e))
    }

    fn explain_line(&self, e: &toml::de::Error) -> String {
        let (text, origin) = (self.text, self.origin);
        let span = e.span().unwrap_or(0..0);
        let line = line_of(text, span.start);
        let table = table_at(text, span.start);
        let message = e.message().trim().replace('\n', " ");
        if let Some(rest) = message.strip_prefix(CHECK) {
            let key = self
                .key_holding(span.start)
                .or_else(|| key_at(text, span.start))
                .unwrap_or_default();
            return format!("{origin}:{line}: {table} {key}{rest}");
        }
        let quote = |s: &str| s.replace('`', "'");
        // An unknown table is reported on its own header: the key belongs to the table above.
        let header = line_text(text, span.start).trim_start().starts_with('[');
        if let Some(rest) = message.strip_prefix("unknown field `") {
            let table = if header { parent_table(&table) } else { table };
            let (key, expected) = rest.split_once('`').unwrap_or((rest, ""));
            let expected = expected
                .trim_start_matches(',')
                .trim()
                .trim_start_matches("expected")
                .trim()
                .trim_start_matches("one of")
                .trim()
                .replace('`', "");
            let expected = if expected.is_empty() {
                "none (this table takes no keys)".into()
            } else {
                expected
            };
            let place = if table == "top level" {
                "at the top level".to_string()
            } else {
                format!("in {table}")
            };
            return format!(
                "{origin}:{line}: unknown key '{key}' {place}; expected one of {expected}"
            );
        }
        if let Some(rest) = message.strip_prefix("missing field `") {
            let key = rest.split('`').next().unwrap_or(rest);
            return format!("{origin}:{line}: missing key '{key}' in {table}");
        }
        match key_at(text, span.start) {
            Some(key) if e.span().is_some() => format!(
                "{origin}:{line}: bad value for '{key}' in {table}: {}",
                quote(&message)
            ),
            // Syntax errors and the like: show the line so the reader sees what is meant.
            _ => format!(
                "{origin}:{line}: {} (at '{}')",
                quote(&message),
                line_text(text, span.start).trim()
            ),
        }
    }
}

/// The value of `name` in table `t`.
fn find<'t, 'i>(t: &'t DeTable<'i>, name: &str) -> Option<&'t Spanned<DeValue<'i>>> {
    t.iter()
        .find(|(k, _)| &**k.get_ref() == name)
        .map(|(_, v)| v)
}

/// 1-based line of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The `[table]` (or `[[table]]`) header in force at byte offset `at`, or "top level".
pub(super) fn table_at(text: &str, at: usize) -> String {
    let before = &text[..floor_char_boundary(text, at)];
    // The current line may itself be a header (an error on the header's span).
    let line_end = text[before.len()..]
        .find('\n')
        .map_or(text.len(), |i| before.len() + i);
    text[..line_end]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| match l.find(']') {
            Some(i) if l.starts_with("[[") => format!("[[{}]]", l[2..i].trim()),
            Some(i) => format!("[{}]", l[1..i].trim()),
            None => l.to_string(),
        })
        .unwrap_or_else(|| "top level".into())
}

fn floor_char_boundary(text: &str, at: usize) -> usize {
    let mut i = at.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The whole line holding byte offset `at`.
fn line_text(text: &str, at: usize) -> &str {
    let at = floor_char_boundary(text, at);
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    &text[start..end]
}

/// `[a.b]` → `[a]`; a top-level table → "top level".
fn parent_table(table: &str) -> String {
    let inner = table.trim_matches(|c| c == '[' || c == ']');
    match inner.rsplit_once('.') {
        Some((parent, _)) => format!("[{parent}]"),
        None => "top level".into(),
    }
}

/// The key on the line at `at` (`key = value`), if the line has one.
pub(super) fn key_at(text: &str, at: usize) -> Option<String> {
    let (key, _) = line_text(text, at).split_once('=')?;
    let key = key.trim().trim_matches('"');
    (!key.is_empty() && !key.starts_with('[')).then(|| key.to_string())
}
