//! Diagnostics: an error or warning at a [`Span`], and its rendering with the source line.

use crate::span::{SourceMap, Span};

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The config is rejected.
    Error,
    /// The config is accepted; something is ignored or suspicious.
    Warning,
}

/// One message about the config, tied to a place in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Where (the caret goes under this range).
    pub span: Span,
    /// One line, lower-case start, no trailing period (`missing ';' after statement`).
    pub message: String,
    /// Extra lines printed after the snippet (`included from a.cfg:3:1`, hints).
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// An error.
    pub fn error(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            span,
            message: message.into(),
            notes: Vec::new(),
        }
    }

    /// A warning.
    pub fn warning(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            span,
            message: message.into(),
            notes: Vec::new(),
        }
    }

    /// Adds a note line.
    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    /// The first line only: `file:line:column: message` (errors) or
    /// `file:line:column: warning: message`.
    pub fn headline(&self, sources: &SourceMap) -> String {
        let pos = sources.format_pos(self.span);
        match self.severity {
            Severity::Error => format!("{pos}: {}", self.message),
            Severity::Warning => format!("{pos}: warning: {}", self.message),
        }
    }
}

/// Renders a diagnostic as the headline, the offending source line, a caret line under the
/// span, the include chain and the notes. Ends with a newline.
///
/// ```text
/// ser.cfg:12:5: missing ';' after statement
///    12 |     t_relay()
///       |     ^^^^^^^^^
///    = note: ...
/// ```
pub fn render(sources: &SourceMap, d: &Diagnostic) -> String {
    let mut out = d.headline(sources);
    out.push('\n');
    if let Some(file) = sources.get(d.span.file) {
        let (line, col) = file.line_col(d.span.start);
        let text = file.line_text(line);
        let (end_line, end_col) = file.line_col(d.span.end.max(d.span.start));
        let text_chars = text.chars().count() as u32;
        let width = if end_line == line && end_col > col {
            end_col - col
        } else if end_line != line {
            (text_chars + 1).saturating_sub(col).max(1)
        } else {
            1
        };
        let num = line.to_string();
        let pad = " ".repeat(num.len());
        // Tabs are kept in the caret line so the caret lines up under tab-indented code.
        let lead: String = text
            .chars()
            .take(col as usize - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        out.push_str(&format!(" {num} | {text}\n"));
        out.push_str(&format!(" {pad} | {lead}{}\n", "^".repeat(width as usize)));
        let mut from = file.included_from;
        let mut guard = 0;
        while let (Some(span), true) = (from, guard < 64) {
            out.push_str(&format!(
                " {pad} = note: included from {}\n",
                sources.format_pos(span)
            ));
            from = sources.get(span.file).and_then(|f| f.included_from);
            guard += 1;
        }
        for n in &d.notes {
            out.push_str(&format!(" {pad} = note: {n}\n"));
        }
    } else {
        for n in &d.notes {
            out.push_str(&format!("  = note: {n}\n"));
        }
    }
    out
}
