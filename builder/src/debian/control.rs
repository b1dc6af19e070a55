//! deb822 control paragraphs: `Release`, `Packages`, a `.deb`'s `control` file
//! and dpkg's `status` database all share this syntax.
//!
//! Fields keep their file order and their value text exactly (continuation
//! lines included), because the dpkg status database is rebuilt from them and
//! must read back byte for byte as dpkg would have written it.

/// One paragraph: `Field: value` lines, continuation lines starting with a space.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Paragraph {
    fields: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {problem}")]
pub struct ControlParseError {
    pub line: usize,
    pub problem: String,
}

impl Paragraph {
    /// The value of `name`, compared case-insensitively as dpkg does. A
    /// multi-line value keeps its newlines and leading spaces after the first line.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Sets `name`, replacing an existing value in place or appending.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self
            .fields
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
        {
            Some((_, v)) => *v = value,
            None => self.fields.push((name.to_string(), value)),
        }
    }

    /// Inserts `name` right after `after` (or at the end), the way dpkg puts
    /// `Status:` after `Package:` in its database.
    pub fn insert_after(&mut self, after: &str, name: &str, value: impl Into<String>) {
        let pos = self
            .fields
            .iter()
            .position(|(k, _)| k.eq_ignore_ascii_case(after))
            .map_or(self.fields.len(), |p| p + 1);
        self.fields.insert(pos, (name.to_string(), value.into()));
    }

    pub fn remove(&mut self, name: &str) -> Option<String> {
        let pos = self
            .fields
            .iter()
            .position(|(k, _)| k.eq_ignore_ascii_case(name))?;
        Some(self.fields.remove(pos).1)
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Writes the paragraph in deb822 form, ending with a newline (no blank line).
    pub fn write_to(&self, out: &mut String) {
        for (k, v) in &self.fields {
            out.push_str(k);
            out.push(':');
            if !v.is_empty() && !v.starts_with('\n') {
                out.push(' ');
            }
            out.push_str(v);
            out.push('\n');
        }
    }
}

/// Parses every paragraph of `text`. Paragraphs are separated by blank lines;
/// `#` comment lines are skipped (allowed in control files, absent in indexes).
pub fn parse_paragraphs(text: &str) -> Result<Vec<Paragraph>, ControlParseError> {
    let mut paragraphs = Vec::new();
    let mut current = Paragraph::default();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        // `lines` ends lines at LF and CRLF; CRs left at the end (the last
        // line's, or those of `\r\r\n`) end the line too, or a continuation
        // would keep a CR that no written paragraph can hold.
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if !current.is_empty() {
                paragraphs.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            let Some((_, value)) = current.fields.last_mut() else {
                return Err(ControlParseError {
                    line: line_no,
                    problem: "continuation line before any field".into(),
                });
            };
            value.push('\n');
            value.push_str(line);
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ControlParseError {
                line: line_no,
                problem: format!("expected `Field: value`, found `{line}`"),
            });
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(ControlParseError {
                line: line_no,
                problem: format!("invalid field name `{name}`"),
            });
        }
        current
            .fields
            .push((name.to_string(), value.trim_start().trim_end().to_string()));
    }
    if !current.is_empty() {
        paragraphs.push(current);
    }
    Ok(paragraphs)
}

/// Parses text that must hold exactly one paragraph (a `.deb`'s `control`).
pub fn parse_single(text: &str) -> Result<Paragraph, ControlParseError> {
    let mut paragraphs = parse_paragraphs(text)?;
    match paragraphs.len() {
        1 => Ok(paragraphs.remove(0)),
        n => Err(ControlParseError {
            line: 1,
            problem: format!("expected one paragraph, found {n}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "Package: a\nVersion: 1.0\nDescription: short\n long line one\n .\n long line two\n\n\nPackage: b\nDepends: a (>= 1.0), c | d\n";

    #[test]
    fn paragraphs_split_on_blank_lines_and_keep_multiline_values() {
        let ps = parse_paragraphs(TWO).unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(
            ps[0].get("description"),
            Some("short\n long line one\n .\n long line two")
        );
        assert_eq!(ps[1].get("Depends"), Some("a (>= 1.0), c | d"));
    }

    #[test]
    fn a_paragraph_writes_back_to_the_same_text() {
        let ps = parse_paragraphs(TWO).unwrap();
        let mut out = String::new();
        ps[0].write_to(&mut out);
        assert_eq!(
            out,
            "Package: a\nVersion: 1.0\nDescription: short\n long line one\n .\n long line two\n"
        );
    }

    #[test]
    fn status_goes_after_package_like_dpkg_writes_it() {
        let mut p = parse_single("Package: a\nVersion: 1\n").unwrap();
        p.insert_after("Package", "Status", "install ok installed");
        let mut out = String::new();
        p.write_to(&mut out);
        assert_eq!(
            out,
            "Package: a\nStatus: install ok installed\nVersion: 1\n"
        );
    }

    #[test]
    fn a_carriage_return_ending_a_continuation_line_is_not_kept() {
        // Found by tests/prop_debian.rs: `Field:\r\n :\r` kept the CR in the
        // value, and the written paragraph read back without it.
        for text in [
            "A: b\n c\r",
            "A: b\r\n c\r\r\n",
            "A: b\n c\r\r",
            "A: b\n c\r\n",
        ] {
            let p = parse_single(text).unwrap();
            assert_eq!(p.get("A"), Some("b\n c"), "{text:?}");
            let mut out = String::new();
            p.write_to(&mut out);
            assert_eq!(parse_single(&out).unwrap(), p);
        }
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number() {
        let err = parse_paragraphs("Package: a\nnot a field\n").unwrap_err();
        assert_eq!(err.line, 2);
        let err = parse_paragraphs(" leading continuation\n").unwrap_err();
        assert_eq!(err.line, 1);
    }
}
