//! Errors in a spec file, each pointing at a file, line, column and field.
//!
//! serde_yaml reports where a parse failed, and stops at the first error; [`recover`]
//! carries on past each one so every problem is reported. For checks that span
//! fields (run after parsing) [`Positions`] maps each field path to where it is
//! written.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use serde_yaml::Value;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// One problem in a spec file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The spec file.
    pub file: PathBuf,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    /// Dotted field path (`app.health[0].timeout`), when known.
    pub field: Option<String>,
    /// What is wrong and what would be valid.
    pub message: String,
}

impl SpecError {
    /// A problem with the file as a whole (unreadable, empty).
    pub fn file(path: &Path, message: String) -> SpecError {
        SpecError {
            file: path.to_path_buf(),
            position: None,
            field: None,
            message,
        }
    }

    /// Converts a serde_yaml error, splitting off the field path and position it embeds.
    /// serde_yaml names the *parent* of a bad scalar; the index, which knows where
    /// each field is written, names the field itself.
    pub fn from_yaml(
        path: &Path,
        err: &serde_yaml::Error,
        index: &HashMap<String, (usize, usize)>,
    ) -> SpecError {
        let position = err.location().map(|l| (l.line(), l.column()));
        let mut text = err.to_string();
        if let Some((head, _)) = text.rsplit_once(" at line ") {
            text = head.to_string();
        }
        // serde_yaml writes "path: message" when it knows the path.
        let (mut field, message) = match text.split_once(": ") {
            Some((f, m)) if looks_like_path(f) => (Some(f.to_string()), m.to_string()),
            _ => (None, text),
        };
        if let Some(pos) = position
            && !message.starts_with("unknown field")
            && let Some(exact) = index
                .iter()
                .filter(|(_, p)| **p == pos)
                .map(|(f, _)| f)
                .max_by_key(|f| f.len())
        {
            field = Some(exact.clone());
        }
        let message = if message.starts_with("unknown field") {
            with_suggestion(&message)
        } else if field.is_none() && err.location().is_some() && !message.contains(" is not ") {
            format!("not valid YAML: {message}")
        } else {
            tidy_serde_message(&message)
        };
        SpecError {
            file: path.to_path_buf(),
            position,
            field,
            message,
        }
    }

    /// A problem with a field found after parsing; located through the index.
    pub fn at_field(
        path: &Path,
        index: &HashMap<String, (usize, usize)>,
        field: &str,
        message: String,
    ) -> SpecError {
        // A defaulted field is not written in the file: point at its nearest parent.
        let mut probe = field.to_string();
        let position = loop {
            if let Some(p) = index.get(&probe) {
                break Some(*p);
            }
            match probe.rfind(['.', '[']) {
                Some(cut) => probe.truncate(cut),
                None => break None,
            }
        };
        SpecError {
            file: path.to_path_buf(),
            position,
            field: Some(field.to_string()),
            message,
        }
    }

    /// A problem with a field's value, located at the value where it is written
    /// (at its key, or its nearest parent, when the value has no position of its own).
    pub fn at_value(path: &Path, positions: &Positions, field: &str, message: String) -> SpecError {
        match positions.values.get(field) {
            Some(p) => SpecError {
                file: path.to_path_buf(),
                position: Some(*p),
                field: Some(field.to_string()),
                message,
            },
            None => SpecError::at_field(path, &positions.fields, field, message),
        }
    }
}

fn looks_like_path(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._[]-".contains(c))
}

/// Adds "did you mean" to serde's "unknown field `x`, expected one of `a`, `b`".
fn with_suggestion(message: &str) -> String {
    let ticks: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    let Some((typo, known)) = ticks.split_first() else {
        return message.to_string();
    };
    match known
        .iter()
        .map(|k| (edit_distance(typo, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
    {
        Some((_, best)) => format!("unknown field `{typo}` (did you mean `{best}`?)"),
        None => message.to_string(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// serde's messages name Rust types; say it in the spec's words.
fn tidy_serde_message(msg: &str) -> String {
    msg.replace("invalid type: ", "wrong type: ")
        .replace("u16", "a port number (1-65535)")
        .replace("i64", "an integer")
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        write!(f, ": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a spec file (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecErrors(pub Vec<SpecError>);

impl SpecErrors {
    /// A list of one.
    pub fn one(e: SpecError) -> SpecErrors {
        SpecErrors(vec![e])
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

/// Where each field path (`app.ports[1]`, `app.health[0].timeout`) is written,
/// as 1-based line and column. Unparseable text gives empty maps.
#[derive(Debug, Default)]
pub struct Positions {
    /// Where each field's key (or sequence item) starts; `""` is the document's root.
    pub fields: HashMap<String, (usize, usize)>,
    /// Where each scalar value written after a key starts.
    pub values: HashMap<String, (usize, usize)>,
}

impl Positions {
    /// Indexes a spec's text.
    pub fn of(text: &str) -> Positions {
        let mut walker = Walker::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut walker, false).is_err() {
            return Positions::default();
        }
        Positions {
            fields: walker.index,
            values: walker.values,
        }
    }
}

/// What [`recover`] found.
pub struct Recovered<T> {
    /// Every type error, the first one first.
    pub errors: Vec<SpecError>,
    /// The document parsed with each bad value left out (a default takes its
    /// place) or, for a required field, a stand-in; `None` when no stand-in fits.
    pub value: Option<T>,
    /// The fields left out or stood in for: checks of these fields, or that
    /// depend on them, would report what is not in the file.
    pub replaced: Vec<String>,
    /// The sequence items left out.
    pub removed: RemovedItems,
}

/// Items taken out of sequences, by the sequence's path and the item's index in
/// the file: a check of what is left counts items without them, and
/// [`RemovedItems::file_indices`] turns its indices back into the file's.
#[derive(Debug, Default)]
pub struct RemovedItems(HashMap<String, BTreeSet<usize>>);

impl RemovedItems {
    /// The index in the file of the `index`th item left in sequence `seq`.
    fn file_index(&self, seq: &str, index: usize) -> usize {
        let gone = self.0.get(seq);
        (0..)
            .filter(|i| gone.is_none_or(|g| !g.contains(i)))
            .nth(index)
            .unwrap_or(index)
    }

    /// `text` with every `seq[i]` naming an item of a shortened sequence
    /// rewritten to the item's index in the file.
    pub fn file_indices(&self, text: &str) -> String {
        let mut seqs: Vec<&String> = self.0.keys().collect();
        // Outer sequences first: an inner one's path holds the outer's file index.
        seqs.sort_by_key(|s| s.len());
        let mut out = text.to_string();
        for seq in seqs {
            let re = regex::Regex::new(&format!(r"{}\[(\d+)\]", regex::escape(seq)))
                .expect("an escaped path is a regular expression");
            out = re
                .replace_all(&out, |c: &regex::Captures| {
                    let index = c[1].parse().unwrap_or(usize::MAX);
                    format!("{seq}[{}]", self.file_index(seq, index))
                })
                .into_owned();
        }
        out
    }
}

/// Values tried, in turn, in place of a required field that was left out.
fn stand_ins() -> [Value; 4] {
    [
        Value::Number(1.into()),
        Value::String("stand-in:1".into()),
        Value::Sequence(vec![Value::String("stand-in".into())]),
        Value::Mapping(Default::default()),
    ]
}

/// Enough for any spec; a bound so a surprise cannot loop.
const MAX_ROUNDS: usize = 200;

/// serde stops at the first error. To report every one, parse the text as a YAML
/// document, and each time deserialising fails, note the error with the field's
/// position, take the bad value out (or stand in for a missing required field)
/// and try again. `first` is serde_yaml's own report of the first error, which
/// knows the exact position.
pub fn recover<T: DeserializeOwned>(
    path: &Path,
    text: &str,
    positions: &Positions,
    first: SpecError,
) -> Recovered<T> {
    let mut out = Recovered {
        errors: vec![first],
        value: None,
        replaced: Vec::new(),
        removed: RemovedItems::default(),
    };
    let Ok(mut doc) = serde_yaml::from_str::<Value>(text) else {
        return out;
    };
    let mut stand_in: HashMap<String, usize> = HashMap::new();
    for round in 0..MAX_ROUNDS {
        let err = match serde_path_to_error::deserialize::<_, T>(&doc) {
            Ok(value) => {
                out.value = Some(value);
                return out;
            }
            Err(e) => e,
        };
        let mut at: Vec<Segment> = err
            .path()
            .iter()
            .filter(|s| matches!(s, Segment::Seq { .. } | Segment::Map { .. }))
            .cloned()
            .collect();
        let message = err.inner().to_string();
        let message = message
            .split_once(" at line ")
            .map_or(message.as_str(), |(m, _)| m);
        let named = message.split('`').nth(1).map(str::to_string);
        let missing = message.starts_with("missing field");
        if (missing || message.starts_with("unknown field"))
            && let Some(name) = named
            && at
                .last()
                .is_none_or(|l| !matches!(l, Segment::Map { key } if *key == name))
        {
            at.push(Segment::Map { key: name });
        }
        let field = file_path(&at, &out.removed);
        let known = within(&field, &out.replaced);
        if round > 0 && !known {
            // An unknown field is pointed at by its key, a bad value by itself.
            out.errors.push(if message.starts_with("unknown field") {
                SpecError::at_field(path, &positions.fields, &field, with_suggestion(message))
            } else {
                SpecError::at_value(path, positions, &field, tidy_serde_message(message))
            });
        }
        if missing || stand_in.contains_key(&field) {
            let tried = stand_in.entry(field.clone()).or_insert(0);
            let Some(value) = stand_ins().into_iter().nth(*tried) else {
                return out;
            };
            *tried += 1;
            if !set(&mut doc, &at, value) {
                return out;
            }
        } else if !remove(&mut doc, &at, &field, &mut out.removed) {
            return out;
        }
        if !known {
            out.replaced.push(field);
        }
    }
    out
}

/// Whether `field` is `base` or inside it, for any `base` in `bases`.
pub fn within(field: &str, bases: &[String]) -> bool {
    bases.iter().any(|b| {
        field == b
            || field
                .strip_prefix(b.as_str())
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
    })
}

/// The dotted path of `at` as written in the file.
fn file_path(at: &[Segment], removed: &RemovedItems) -> String {
    let mut out = String::new();
    for seg in at {
        match seg {
            Segment::Seq { index } => out = format!("{out}[{}]", removed.file_index(&out, *index)),
            Segment::Map { key } if out.is_empty() => out = key.clone(),
            Segment::Map { key } => out = format!("{out}.{key}"),
            _ => {}
        }
    }
    out
}

fn key_is(k: &Value, name: &str) -> bool {
    match k {
        Value::String(s) => s == name,
        Value::Number(n) => n.to_string() == name,
        Value::Bool(b) => b.to_string() == name,
        _ => false,
    }
}

/// The node at `at`, looking through tags.
fn node<'a>(mut v: &'a mut Value, at: &[Segment]) -> Option<&'a mut Value> {
    for seg in at {
        while let Value::Tagged(t) = v {
            v = &mut t.value;
        }
        v = match (seg, v) {
            (Segment::Seq { index }, Value::Sequence(items)) => items.get_mut(*index)?,
            (Segment::Map { key }, Value::Mapping(map)) => map
                .iter_mut()
                .find(|(k, _)| key_is(k, key))
                .map(|(_, v)| v)?,
            _ => return None,
        };
    }
    while let Value::Tagged(t) = v {
        v = &mut t.value;
    }
    Some(v)
}

/// Takes the node at `at` out of its parent; false if there is none to take.
fn remove(doc: &mut Value, at: &[Segment], field: &str, removed: &mut RemovedItems) -> bool {
    let Some((last, parent)) = at.split_last() else {
        return false;
    };
    match (last, node(doc, parent)) {
        (Segment::Seq { index }, Some(Value::Sequence(items))) if *index < items.len() => {
            items.remove(*index);
            if let Some((seq, item)) = field.rsplit_once('[')
                && let Ok(i) = item.trim_end_matches(']').parse()
            {
                removed.0.entry(seq.to_string()).or_default().insert(i);
            }
            true
        }
        (Segment::Map { key }, Some(Value::Mapping(map))) => {
            let before = map.len();
            map.retain(|k, _| !key_is(k, key));
            map.len() < before
        }
        _ => false,
    }
}

/// Puts `value` at `at` (a key of a mapping); false if the parent is no mapping.
fn set(doc: &mut Value, at: &[Segment], value: Value) -> bool {
    let Some((Segment::Map { key }, parent)) = at.split_last() else {
        return false;
    };
    match node(doc, parent) {
        Some(Value::Mapping(map)) => {
            map.retain(|k, _| !key_is(k, key));
            map.insert(Value::String(key.clone()), value);
            true
        }
        _ => false,
    }
}

#[derive(Default)]
struct Walker {
    index: HashMap<String, (usize, usize)>,
    values: HashMap<String, (usize, usize)>,
    stack: Vec<Frame>,
}

enum Frame {
    /// A mapping: the path it lives at, and the key whose value comes next.
    Map { path: String, key: Option<String> },
    /// A sequence: the path it lives at and the next item's index.
    Seq { path: String, next: usize },
}

impl Walker {
    /// Called when a value starts: returns its path and records its position.
    fn enter_value(&mut self, mark: Marker) -> Option<String> {
        let path = match self.stack.last_mut()? {
            Frame::Map { path, key } => {
                let k = key.take()?;
                if path.is_empty() {
                    k
                } else {
                    format!("{path}.{k}")
                }
            }
            Frame::Seq { path, next } => {
                let p = format!("{path}[{next}]");
                *next += 1;
                self.index.insert(p.clone(), (mark.line(), mark.col() + 1));
                p
            }
        };
        Some(path)
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map { path, key }) = self.stack.last_mut()
                    && key.is_none()
                {
                    let full = if path.is_empty() {
                        value.clone()
                    } else {
                        format!("{path}.{value}")
                    };
                    self.index.insert(full, (mark.line(), mark.col() + 1));
                    *key = Some(value);
                    return;
                }
                if let Some(path) = self.enter_value(mark) {
                    self.values.insert(path, (mark.line(), mark.col() + 1));
                }
            }
            Event::MappingStart(..) => {
                let path = if self.stack.is_empty() {
                    self.index
                        .insert(String::new(), (mark.line(), mark.col() + 1));
                    Some(String::new())
                } else {
                    self.enter_value(mark)
                };
                self.stack.push(Frame::Map {
                    path: path.unwrap_or_default(),
                    key: None,
                });
            }
            Event::SequenceStart(..) => {
                let path = self.enter_value(mark).unwrap_or_default();
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Alias(_) => {
                self.enter_value(mark);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_points_at_keys_and_items() {
        let text = "project: x\napp:\n  ports:\n    - \"80:80\"\n    - \"81:80\"\n  health:\n    - tcp: {port: 80}\n      timeout: 5s\n";
        let positions = Positions::of(text);
        let idx = &positions.fields;
        assert_eq!(positions.values["project"], (1, 10));
        assert_eq!(positions.values["app.health[0].timeout"], (8, 16));
        assert_eq!(idx["project"], (1, 1));
        assert_eq!(idx["app.ports"], (3, 3));
        assert_eq!(idx["app.ports[1]"], (5, 7));
        assert_eq!(idx["app.health[0].timeout"], (8, 7));
        assert_eq!(idx["app.health[0].tcp.port"], (7, 13));
    }
}
