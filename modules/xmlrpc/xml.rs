//! A small, bounded XML reader: enough of XML 1.0 for XML-RPC documents
//! (elements, attributes skipped, character data, the five predefined
//! entities, character references, CDATA sections, comments, processing
//! instructions). DOCTYPE declarations are refused: XML-RPC has none, and
//! refusing them rules out entity expansion attacks.

/// One node of the parsed tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// An element.
    Elem(Element),
    /// Character data (entities resolved).
    Text(String),
}

/// An element: its name and children, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Element {
    /// The tag name (namespace prefix kept).
    pub name: String,
    /// Child nodes.
    pub children: Vec<Node>,
}

impl Element {
    /// Child elements, in order.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Elem(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The first child element called `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.elements().find(|e| e.name == name)
    }

    /// The concatenated character data of the direct children.
    pub fn text(&self) -> String {
        self.children
            .iter()
            .filter_map(|n| match n {
                Node::Text(t) => Some(t.as_str()),
                Node::Elem(_) => None,
            })
            .collect()
    }

    /// Whether a direct child is non-blank text.
    pub fn has_text(&self) -> bool {
        self.children
            .iter()
            .any(|n| matches!(n, Node::Text(t) if !t.trim().is_empty()))
    }
}

/// Nesting deeper than this is refused (XML-RPC documents are shallow;
/// a struct in an array in a param is 8 levels).
pub const MAX_DEPTH: usize = 64;
/// More nodes than this is refused.
pub const MAX_NODES: usize = 100_000;

/// Parses `doc` into its root element.
pub fn parse(doc: &str) -> Result<Element, String> {
    let mut r = Reader {
        s: doc.as_bytes(),
        doc,
        p: 0,
        nodes: 0,
    };
    r.misc()?;
    if r.p >= r.s.len() || r.s[r.p] != b'<' {
        return Err("no root element".into());
    }
    let root = r.element(0)?;
    r.misc()?;
    if r.p != r.s.len() {
        return Err(format!("content after the root element at byte {}", r.p));
    }
    Ok(root)
}

struct Reader<'a> {
    s: &'a [u8],
    doc: &'a str,
    p: usize,
    nodes: usize,
}

fn is_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':') || c >= 0x80
}

impl Reader<'_> {
    fn starts(&self, t: &str) -> bool {
        self.s[self.p..].starts_with(t.as_bytes())
    }

    fn skip_ws(&mut self) {
        while self.p < self.s.len() && self.s[self.p].is_ascii_whitespace() {
            self.p += 1;
        }
    }

    /// Skips to just after `end`.
    fn skip_past(&mut self, end: &str, what: &str) -> Result<usize, String> {
        let from = self.p;
        match find(&self.s[from..], end.as_bytes()) {
            Some(i) => {
                self.p = from + i + end.len();
                Ok(from + i)
            }
            None => Err(format!("unterminated {what} at byte {from}")),
        }
    }

    /// White space, comments and processing instructions around the root.
    fn misc(&mut self) -> Result<(), String> {
        loop {
            self.skip_ws();
            if self.starts("<?") {
                self.skip_past("?>", "processing instruction")?;
            } else if self.starts("<!--") {
                self.skip_past("-->", "comment")?;
            } else if self.starts("<!") {
                return Err("DOCTYPE and other declarations are not accepted".into());
            } else {
                return Ok(());
            }
        }
    }

    fn name(&mut self) -> Result<String, String> {
        let from = self.p;
        while self.p < self.s.len() && is_name_byte(self.s[self.p]) {
            self.p += 1;
        }
        if from == self.p {
            return Err(format!("expected a name at byte {from}"));
        }
        Ok(self.doc[from..self.p].to_owned())
    }

    fn count(&mut self) -> Result<(), String> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(format!("more than {MAX_NODES} XML nodes"));
        }
        Ok(())
    }

    /// An element starting at `<`.
    fn element(&mut self, depth: usize) -> Result<Element, String> {
        if depth >= MAX_DEPTH {
            return Err(format!("elements nested deeper than {MAX_DEPTH}"));
        }
        self.count()?;
        self.p += 1;
        let name = self.name()?;
        // Attributes: skipped, but their quoting must be sound.
        loop {
            self.skip_ws();
            match self.s.get(self.p) {
                None => return Err(format!("unterminated start tag <{name}>")),
                Some(b'>') => {
                    self.p += 1;
                    break;
                }
                Some(b'/') if self.s.get(self.p + 1) == Some(&b'>') => {
                    self.p += 2;
                    return Ok(Element {
                        name,
                        children: Vec::new(),
                    });
                }
                Some(_) => {
                    self.name()?;
                    self.skip_ws();
                    if self.s.get(self.p) != Some(&b'=') {
                        return Err(format!("attribute without value in <{name}>"));
                    }
                    self.p += 1;
                    self.skip_ws();
                    let q = match self.s.get(self.p) {
                        Some(&q @ (b'"' | b'\'')) => q,
                        _ => return Err(format!("unquoted attribute value in <{name}>")),
                    };
                    self.p += 1;
                    match self.s[self.p..].iter().position(|c| *c == q) {
                        Some(i) => self.p += i + 1,
                        None => return Err(format!("unterminated attribute in <{name}>")),
                    }
                }
            }
        }
        let mut el = Element {
            name,
            children: Vec::new(),
        };
        let mut text = String::new();
        loop {
            if self.p >= self.s.len() {
                return Err(format!("element <{}> is not closed", el.name));
            }
            if self.starts("</") {
                self.p += 2;
                let end = self.name()?;
                self.skip_ws();
                if end != el.name || self.s.get(self.p) != Some(&b'>') {
                    return Err(format!("</{end}> does not close <{}>", el.name));
                }
                self.p += 1;
                flush(&mut el, &mut text);
                return Ok(el);
            } else if self.starts("<!--") {
                self.skip_past("-->", "comment")?;
            } else if self.starts("<![CDATA[") {
                self.p += 9;
                let from = self.p;
                let end = self.skip_past("]]>", "CDATA section")?;
                text.push_str(&self.doc[from..end]);
            } else if self.starts("<?") {
                self.skip_past("?>", "processing instruction")?;
            } else if self.starts("<!") {
                return Err("declarations are not accepted inside elements".into());
            } else if self.s[self.p] == b'<' {
                flush(&mut el, &mut text);
                let child = self.element(depth + 1)?;
                el.children.push(Node::Elem(child));
            } else if self.s[self.p] == b'&' {
                self.entity(&mut text)?;
            } else {
                let from = self.p;
                while self.p < self.s.len() && !matches!(self.s[self.p], b'<' | b'&') {
                    self.p += 1;
                }
                text.push_str(&self.doc[from..self.p]);
            }
        }
    }

    /// `&name;` or `&#N;` / `&#xH;` at `p`, appended to `out`.
    fn entity(&mut self, out: &mut String) -> Result<(), String> {
        let from = self.p;
        let Some(len) = self.s[from..].iter().take(12).position(|c| *c == b';') else {
            return Err(format!("bad entity reference at byte {from}"));
        };
        let body = &self.doc[from + 1..from + len];
        self.p = from + len + 1;
        let c = match body {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(h) = body.strip_prefix("#x").or(body.strip_prefix("#X")) {
                    u32::from_str_radix(h, 16).ok()
                } else if let Some(d) = body.strip_prefix('#') {
                    d.parse().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
                    .ok_or_else(|| format!("unknown entity &{body}; at byte {from}"))?
            }
        };
        out.push(c);
        Ok(())
    }
}

fn flush(el: &mut Element, text: &mut String) {
    if !text.is_empty() {
        el.children.push(Node::Text(std::mem::take(text)));
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Escapes character data: `<`, `>`, `&` and, with `escape_cr`, CR.
pub fn escape(s: &str, escape_cr: bool, out: &mut String) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\r' if escape_cr => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_text_entities_cdata() {
        let d =
            "<?xml version=\"1.0\"?>\n<!-- c --><a x='1' y=\"2\"><b>1 &lt; 2 &amp;&#65;&#x42;</b>\
                 <c/><d><![CDATA[<raw>]]></d><!-- in --></a>\n";
        let a = parse(d).unwrap();
        assert_eq!(a.name, "a");
        assert_eq!(a.child("b").unwrap().text(), "1 < 2 &AB");
        assert!(a.child("c").unwrap().children.is_empty());
        assert_eq!(a.child("d").unwrap().text(), "<raw>");
        assert_eq!(a.elements().count(), 3);
    }

    #[test]
    fn malformed_documents_are_errors() {
        for bad in [
            "",
            "text",
            "<a>",
            "<a></b>",
            "<a><b></a></b>",
            "<a>&bogus;</a>",
            "<a>&#xFFFFFFFF;</a>",
            "<a>&amp</a>",
            "<a x=1></a>",
            "<a x></a>",
            "<a/><b/>",
            "<!DOCTYPE a [<!ENTITY e \"x\">]><a>&e;</a>",
            "<a><!-- unterminated </a>",
            "<a><![CDATA[x</a>",
            "< a/>",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn depth_and_size_are_bounded() {
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert!(parse(&deep).unwrap_err().contains("deeper"));
        let ok = "<a>".repeat(MAX_DEPTH - 1) + &"</a>".repeat(MAX_DEPTH - 1);
        assert!(parse(&ok).is_ok());
        let wide = format!("<a>{}</a>", "<b/>".repeat(MAX_NODES));
        assert!(parse(&wide).unwrap_err().contains("nodes"));
    }

    #[test]
    fn escaping() {
        let mut s = String::new();
        escape("a<b>&c\r\n", true, &mut s);
        assert_eq!(s, "a&lt;b&gt;&amp;c&#xD;\n");
        s.clear();
        escape("\r", false, &mut s);
        assert_eq!(s, "\r");
    }
}
