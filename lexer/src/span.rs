//! Source positions: which file, which byte range, and how to turn that into `line:column`.
//!
//! Every file the preprocessor reads (the main config and each `include_file`) gets a
//! [`FileId`] in one [`SourceMap`]. Tokens and AST nodes carry a [`Span`] (file + byte
//! range); diagnostics turn it into `file:line:column` only when they are printed.

use std::fmt;

/// Index of a file in a [`SourceMap`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId(pub u32);

/// One point in the source: a file and a byte offset inside it.
///
/// This is the `Location` type handed to the lalrpop parser.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// The file.
    pub file: FileId,
    /// Byte offset from the start of the file.
    pub offset: u32,
}

/// A byte range `start..end` in one file.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    /// The file the range is in.
    pub file: FileId,
    /// First byte.
    pub start: u32,
    /// One past the last byte (`start == end` for an empty span, e.g. end of file).
    pub end: u32,
}

impl Span {
    /// A span from `lo` to `hi`. If the two points lie in different files (a construct that
    /// starts in one file and ends in an included one), the span shrinks to `lo`.
    pub fn new(lo: Pos, hi: Pos) -> Span {
        if lo.file == hi.file && hi.offset >= lo.offset {
            Span {
                file: lo.file,
                start: lo.offset,
                end: hi.offset,
            }
        } else {
            Span {
                file: lo.file,
                start: lo.offset,
                end: lo.offset,
            }
        }
    }

    /// The start point.
    pub fn lo(self) -> Pos {
        Pos {
            file: self.file,
            offset: self.start,
        }
    }

    /// The end point.
    pub fn hi(self) -> Pos {
        Pos {
            file: self.file,
            offset: self.end,
        }
    }

    /// The smallest span covering `self` and `other` (same file), else `self`.
    pub fn to(self, other: Span) -> Span {
        if self.file != other.file {
            return self;
        }
        Span {
            file: self.file,
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

impl fmt::Debug for Span {
    // Compact, because spans appear in every AST node dump.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}..{}", self.file.0, self.start, self.end)
    }
}

/// One file loaded into the [`SourceMap`].
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// The name printed in diagnostics (the path as given, or the name passed to `parse_str`).
    pub name: String,
    /// Full text.
    pub text: String,
    /// Where this file was included from (`include_file` / `import_file` directive), if it was.
    pub included_from: Option<Span>,
    line_starts: Vec<u32>,
}

impl SourceFile {
    fn new(name: String, text: String, included_from: Option<Span>) -> SourceFile {
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| (i + 1) as u32),
        );
        SourceFile {
            name,
            text,
            included_from,
            line_starts,
        }
    }

    /// 1-based line and column (column counted in characters) of a byte offset.
    pub fn line_col(&self, offset: u32) -> (u32, u32) {
        let line_idx = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1, // i >= 1 because line_starts[0] == 0 <= offset
        };
        let start = self.line_starts[line_idx] as usize;
        let end = (offset as usize).min(self.text.len());
        let col = self
            .text
            .get(start..end)
            .map_or(end - start, |s| s.chars().count());
        (line_idx as u32 + 1, col as u32 + 1)
    }

    /// The text of a 1-based line, without its line terminator.
    pub fn line_text(&self, line: u32) -> &str {
        let idx = (line as usize).saturating_sub(1);
        let Some(&start) = self.line_starts.get(idx) else {
            return "";
        };
        let end = self
            .line_starts
            .get(idx + 1)
            .map_or(self.text.len(), |&e| e as usize);
        let s = self.text.get(start as usize..end).unwrap_or("");
        s.trim_end_matches(['\n', '\r'])
    }
}

/// All files read while preprocessing one config.
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    /// An empty map.
    pub fn new() -> SourceMap {
        SourceMap::default()
    }

    /// Adds a file and returns its id.
    pub fn add(&mut self, name: String, text: String, included_from: Option<Span>) -> FileId {
        let id = FileId(self.files.len() as u32);
        self.files.push(SourceFile::new(name, text, included_from));
        id
    }

    /// The file with this id. Ids come only from [`SourceMap::add`] on this map.
    pub fn file(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    /// The file with this id, or `None` if the id is not from this map.
    pub fn get(&self, id: FileId) -> Option<&SourceFile> {
        self.files.get(id.0 as usize)
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// True when no file was added.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// `(file name, line, column)` of the start of a span.
    pub fn locate(&self, span: Span) -> (&str, u32, u32) {
        match self.get(span.file) {
            Some(f) => {
                let (l, c) = f.line_col(span.start);
                (&f.name, l, c)
            }
            None => ("?", 0, 0),
        }
    }

    /// `file:line:column` of the start of a span.
    pub fn format_pos(&self, span: Span) -> String {
        let (name, line, col) = self.locate(span);
        format!("{name}:{line}:{col}")
    }

    /// The source text a span covers (empty if out of range).
    pub fn snippet(&self, span: Span) -> &str {
        self.get(span.file)
            .and_then(|f| f.text.get(span.start as usize..span.end as usize))
            .unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_and_line_text() {
        let mut sm = SourceMap::new();
        let id = sm.add("a.cfg".into(), "ab\ncdé\n\nx".into(), None);
        let f = sm.file(id);
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(2), (1, 3));
        assert_eq!(f.line_col(3), (2, 1));
        assert_eq!(f.line_col(7), (2, 4)); // after the two-byte é
        assert_eq!(f.line_col(9), (4, 1));
        assert_eq!(f.line_text(2), "cdé");
        assert_eq!(f.line_text(3), "");
        assert_eq!(f.line_text(9), "");
        assert_eq!(
            sm.format_pos(Span {
                file: id,
                start: 3,
                end: 4
            }),
            "a.cfg:2:1"
        );
    }
}
