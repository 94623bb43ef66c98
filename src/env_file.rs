//! Env files: `KEY=value` lines, blank lines and `#` comments, the format gemctl
//! passes to containers. [`problems`] checks a file strictly and locates each
//! problem by line and column; [`entries`] reads a file that passed.
//!
//! Env files hold secrets, so no message here ever contains a value, nor a line
//! that may be one: problems name the line, the column and, at most, the key.

/// One problem in an env file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong; never contains a value.
    pub message: String,
}

/// What one line of an env file is.
enum Line<'a> {
    /// Blank or a comment.
    Skip,
    /// A `KEY=value` entry, as passed to the container.
    Entry(&'a str),
    /// A problem at a 0-based character column of the raw line.
    Bad(usize, String),
}

/// Reads one raw line (without its `\n`): trimmed, `export ` allowed, then checked.
fn line(raw: &str) -> Line<'_> {
    let text = raw.trim();
    if text.is_empty() || text.starts_with('#') {
        return Line::Skip;
    }
    let indent = raw.chars().count() - raw.trim_start().chars().count();
    let (text, indent) = match text.strip_prefix("export ") {
        Some(rest) => (rest, indent + "export ".len()),
        None => (text, indent),
    };
    let Some((key, value)) = text.split_once('=') else {
        return Line::Bad(
            indent,
            "this line has no '=': write KEY=value (a comment starts with '#'); \
             the line is not shown, it may hold a secret"
                .into(),
        );
    };
    if key.is_empty() {
        return Line::Bad(
            indent,
            "the line starts with '=': the name is missing".into(),
        );
    }
    if let Some(at) = key.chars().position(|c| !c.is_ascii_graphic()) {
        return Line::Bad(
            indent + at,
            "the name before '=' contains a space, a control or a non-ASCII character \
             (write NAME=value, with no space around '=')"
                .into(),
        );
    }
    if let Some((at, c)) = value.char_indices().find(|(_, c)| forbidden(*c)) {
        let column = indent + key.chars().count() + 1 + value[..at].chars().count();
        return Line::Bad(
            column,
            format!(
                "the value of {key} contains {}: Docker cannot pass it to the container \
                 (the value is not shown)",
                describe(c)
            ),
        );
    }
    Line::Entry(text)
}

/// Characters no environment value may hold: a NUL ends a C string, and other
/// control characters (a stray carriage return from a Windows editor, an escape
/// sequence) are invisible mistakes. A tab is text.
pub fn forbidden(c: char) -> bool {
    c.is_control() && c != '\t'
}

/// Names a forbidden character without printing it.
pub fn describe(c: char) -> String {
    match c {
        '\0' => "a NUL byte".into(),
        '\r' => "a carriage return".into(),
        '\n' => "a line break".into(),
        c => format!("the control character U+{:04X}", u32::from(c)),
    }
}

/// Every problem in an env file's bytes (empty: the file is fine).
pub fn problems(bytes: &[u8]) -> Vec<Problem> {
    let mut out = Vec::new();
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        match std::str::from_utf8(raw) {
            Err(e) => out.push(Problem {
                line: i + 1,
                column: String::from_utf8_lossy(&raw[..e.valid_up_to()])
                    .chars()
                    .count()
                    + 1,
                message: "this line is not UTF-8 text: save the file as UTF-8".into(),
            }),
            Ok(text) => {
                if let Line::Bad(at, message) = line(text) {
                    out.push(Problem {
                        line: i + 1,
                        column: at + 1,
                        message,
                    });
                }
            }
        }
    }
    out
}

/// The `KEY=value` entries of an env file, in order (lines [`problems`] reports
/// are left out).
pub fn entries(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| match line(l) {
            Line::Entry(e) => Some(e.to_string()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_skip_comments_and_blank_lines_and_allow_export() {
        let text = "# c\n\nA=1\r\n  export B=two words\nC=\n";
        assert_eq!(entries(text), ["A=1", "B=two words", "C="]);
        assert!(problems(text.as_bytes()).is_empty());
    }

    #[test]
    fn problems_are_located_and_never_show_the_value() {
        let text = b"OK=1\nnoequals-s3cret\nBAD KEY=x\nPW=ab\0s3cret\nX=a\rs3cret\n=v\nY=\xff\xfes3cret\nT=a\tb\n";
        let p = problems(text);
        let at: Vec<(usize, usize)> = p.iter().map(|p| (p.line, p.column)).collect();
        assert_eq!(at, [(2, 1), (3, 4), (4, 6), (5, 4), (6, 1), (7, 3)]);
        assert!(p[2].message.contains("PW contains a NUL byte"), "{p:?}");
        assert!(p[3].message.contains("a carriage return"), "{p:?}");
        for problem in &p {
            assert!(!problem.message.contains("s3cret"), "{problem:?}");
        }
    }
}
