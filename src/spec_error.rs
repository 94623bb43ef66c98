//! Errors in a spec file, each pointing at a file, line, column and field.
//!
//! serde_yaml reports where a parse failed; for checks that span fields (run after
//! parsing) [`position_index`] maps each field path to where it is written.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

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

/// Maps each field path (`app.ports[1]`, `app.health[0].timeout`) to the 1-based
/// line and column where it is written. Unparseable text gives an empty index.
pub fn position_index(text: &str) -> HashMap<String, (usize, usize)> {
    let mut walker = Walker::default();
    let mut parser = Parser::new_from_str(text);
    if parser.load(&mut walker, false).is_err() {
        return HashMap::new();
    }
    walker.index
}

#[derive(Default)]
struct Walker {
    index: HashMap<String, (usize, usize)>,
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
                self.enter_value(mark);
            }
            Event::MappingStart(..) => {
                let path = if self.stack.is_empty() {
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
        let idx = position_index(text);
        assert_eq!(idx["project"], (1, 1));
        assert_eq!(idx["app.ports"], (3, 3));
        assert_eq!(idx["app.ports[1]"], (5, 7));
        assert_eq!(idx["app.health[0].timeout"], (8, 7));
        assert_eq!(idx["app.health[0].tcp.port"], (7, 13));
    }
}
