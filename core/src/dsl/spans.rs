//! Byte spans of every value in a RON text, addressed by path (`nets.g1.nodes.3.1`).
//!
//! serde gives us typed values but no positions, so after `ron` has accepted a file we
//! scan it once more into a light tree of spans. Later stages ask for the span of the
//! value that caused an error. The scanner never panics; on text it does not understand
//! it gives up and callers fall back to a coarser span.

use crate::error::Span;

/// One key of a path into the span tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    /// A struct field or a map key (string keys without quotes).
    Name(String),
    /// A position in a tuple, list or positional struct.
    Index(usize),
}

impl From<&str> for Key {
    fn from(s: &str) -> Self {
        Key::Name(s.to_string())
    }
}

impl From<usize> for Key {
    fn from(i: usize) -> Self {
        Key::Index(i)
    }
}

/// The span of a value and, for compound values, of its children.
#[derive(Clone, Debug, Default)]
pub struct SpanTree {
    /// Start and end byte offsets of the value.
    pub range: (usize, usize),
    /// For map entries, the span of the key.
    pub key_range: Option<(usize, usize)>,
    children: Vec<(Key, SpanTree)>,
    /// Position of the first child of each name (lookups stay O(1) in big files).
    names: std::collections::HashMap<String, usize>,
}

impl SpanTree {
    /// Scan `text`; `None` if it is not RON this scanner understands.
    pub fn scan(text: &str) -> Option<SpanTree> {
        let mut s = Scanner { b: text.as_bytes(), i: 0, depth: 0 };
        s.skip_attributes()?;
        let t = s.value()?;
        Some(t)
    }

    /// The span of this value.
    pub fn span(&self) -> Span {
        (self.range.0, self.range.1 - self.range.0).into()
    }

    /// The child under one key.
    pub fn child(&self, key: &Key) -> Option<&SpanTree> {
        match key {
            Key::Name(n) => self.names.get(n).map(|&i| &self.children[i].1),
            Key::Index(i) => match self.children.get(*i) {
                Some((k, t)) if k == key => Some(t),
                _ => self.children.iter().find(|(k, _)| k == key).map(|(_, t)| t),
            },
        }
    }

    /// The value at a path.
    pub fn get(&self, path: &[Key]) -> Option<&SpanTree> {
        path.iter().try_fold(self, |t, k| t.child(k))
    }

    /// The span of the deepest value along `path` that exists.
    pub fn best(&self, path: &[Key]) -> Span {
        let mut t = self;
        for k in path {
            match t.child(k) {
                Some(c) => t = c,
                None => break,
            }
        }
        t.span()
    }

    /// The key of the `i`-th child.
    pub fn nth_key(&self, i: usize) -> Option<&Key> {
        self.children.get(i).map(|(k, _)| k)
    }

    /// The span of the `i`-th child's key (or value).
    pub fn nth_span(&self, i: usize) -> Option<Span> {
        self.children.get(i).map(|(_, t)| {
            let r = t.key_range.unwrap_or(t.range);
            (r.0, r.1 - r.0).into()
        })
    }

    /// The span of a map key at `path` (or of the value if it has no key).
    pub fn key_span(&self, path: &[Key]) -> Option<Span> {
        let t = self.get(path)?;
        let r = t.key_range.unwrap_or(t.range);
        Some((r.0, r.1 - r.0).into())
    }

    /// The children, in text order.
    pub fn children(&self) -> &[(Key, SpanTree)] {
        &self.children
    }

    /// This tree with every offset moved by `by` (a file's place in a joined source).
    pub fn shifted(mut self, by: usize) -> Self {
        self.shift(by);
        self
    }

    fn shift(&mut self, by: usize) {
        self.range = (self.range.0 + by, self.range.1 + by);
        self.key_range = self.key_range.map(|(a, b)| (a + by, b + by));
        for (_, c) in &mut self.children {
            c.shift(by);
        }
    }

    /// The child under `key`, made by `make` first if there is none.
    pub fn child_or(&mut self, key: Key, make: impl FnOnce() -> SpanTree) -> &mut SpanTree {
        if self.child(&key).is_none() {
            self.set_child(key.clone(), make());
        }
        let i = self.children.iter().position(|(k, _)| *k == key).unwrap_or(0);
        &mut self.children[i].1
    }

    /// The same span without children (a section to fill from several files).
    pub fn emptied(&self) -> SpanTree {
        SpanTree { range: self.range, key_range: self.key_range, ..SpanTree::default() }
    }

    /// Put `tree` under `key`, replacing the child of that key if there is one.
    pub fn set_child(&mut self, key: Key, tree: SpanTree) {
        match self.children.iter().position(|(k, _)| *k == key) {
            Some(i) => self.children[i].1 = tree,
            None => {
                if let Key::Name(n) = &key {
                    self.names.insert(n.clone(), self.children.len());
                }
                self.children.push((key, tree));
            }
        }
    }
}

const MAX_DEPTH: usize = 256;

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    depth: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) -> Option<()> {
        loop {
            match self.peek() {
                Some(c) if c.is_ascii_whitespace() => self.i += 1,
                Some(b'/') if self.b.get(self.i + 1) == Some(&b'/') => {
                    while let Some(c) = self.peek() {
                        self.i += 1;
                        if c == b'\n' {
                            break;
                        }
                    }
                }
                Some(b'/') if self.b.get(self.i + 1) == Some(&b'*') => {
                    self.i += 2;
                    let mut level = 1;
                    while level > 0 {
                        match (self.peek()?, self.b.get(self.i + 1).copied()) {
                            (b'*', Some(b'/')) => {
                                level -= 1;
                                self.i += 2;
                            }
                            (b'/', Some(b'*')) => {
                                level += 1;
                                self.i += 2;
                            }
                            _ => self.i += 1,
                        }
                    }
                }
                _ => return Some(()),
            }
        }
    }

    fn skip_attributes(&mut self) -> Option<()> {
        self.ws()?;
        while self.peek() == Some(b'#') {
            while self.peek()? != b']' {
                self.i += 1;
            }
            self.i += 1;
            self.ws()?;
        }
        Some(())
    }

    fn value(&mut self) -> Option<SpanTree> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        self.ws()?;
        let start = self.i;
        let c = self.peek()?;
        let mut children = Vec::new();
        match c {
            b'"' => self.string()?,
            b'r' if matches!(self.b.get(self.i + 1), Some(b'"' | b'#')) => self.raw_string()?,
            b'\'' => {
                self.i += 1;
                while self.peek()? != b'\'' {
                    if self.peek()? == b'\\' {
                        self.i += 1;
                    }
                    self.i += 1;
                }
                self.i += 1;
            }
            b'[' => {
                self.i += 1;
                children = self.seq(b']')?;
            }
            b'{' => {
                self.i += 1;
                children = self.map()?;
            }
            b'(' => {
                self.i += 1;
                children = self.tuple_or_struct()?;
            }
            c if c == b'-' || c == b'+' || c == b'.' || c.is_ascii_digit() => {
                while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || b"+-._".contains(&c)) {
                    self.i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                self.ident()?;
                self.ws()?;
                if self.peek() == Some(b'(') {
                    self.i += 1;
                    children = self.tuple_or_struct()?;
                }
            }
            _ => return None,
        }
        self.depth -= 1;
        let mut names = std::collections::HashMap::new();
        for (i, (k, _)) in children.iter().enumerate() {
            if let Key::Name(n) = k {
                names.entry(n.clone()).or_insert(i);
            }
        }
        Some(SpanTree { range: (start, self.i), key_range: None, children, names })
    }

    fn string(&mut self) -> Option<()> {
        self.i += 1;
        loop {
            match self.peek()? {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                _ => self.i += 1,
            }
        }
    }

    fn raw_string(&mut self) -> Option<()> {
        self.i += 1;
        let mut hashes = 0;
        while self.peek()? == b'#' {
            hashes += 1;
            self.i += 1;
        }
        if self.peek()? != b'"' {
            return None;
        }
        self.i += 1;
        loop {
            if self.peek()? == b'"' && self.b.get(self.i + 1..self.i + 1 + hashes)? == vec![b'#'; hashes].as_slice() {
                self.i += 1 + hashes;
                return Some(());
            }
            self.i += 1;
        }
    }

    fn ident(&mut self) -> Option<String> {
        let start = self.i;
        if self.peek() == Some(b'r') && self.b.get(self.i + 1) == Some(&b'#') {
            self.i += 2;
        }
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_') {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.b[start..self.i]).into_owned())
    }

    fn seq(&mut self, close: u8) -> Option<Vec<(Key, SpanTree)>> {
        let mut out = Vec::new();
        loop {
            self.ws()?;
            if self.peek()? == close {
                self.i += 1;
                return Some(out);
            }
            let v = self.value()?;
            out.push((Key::Index(out.len()), v));
            self.ws()?;
            match self.peek()? {
                b',' => self.i += 1,
                c if c == close => {}
                _ => return None,
            }
        }
    }

    fn map(&mut self) -> Option<Vec<(Key, SpanTree)>> {
        let mut out = Vec::new();
        loop {
            self.ws()?;
            if self.peek()? == b'}' {
                self.i += 1;
                return Some(out);
            }
            let k = self.value()?;
            let text = String::from_utf8_lossy(&self.b[k.range.0..k.range.1]).into_owned();
            let name = text.trim_matches('"').to_string();
            self.ws()?;
            if self.peek()? != b':' {
                return None;
            }
            self.i += 1;
            let mut v = self.value()?;
            v.key_range = Some(k.range);
            out.push((Key::Name(name), v));
            self.ws()?;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {}
                _ => return None,
            }
        }
    }

    fn tuple_or_struct(&mut self) -> Option<Vec<(Key, SpanTree)>> {
        let mut out = Vec::new();
        loop {
            self.ws()?;
            if self.peek()? == b')' {
                self.i += 1;
                return Some(out);
            }
            let save = self.i;
            let mut named = None;
            if let Some(c) = self.peek() {
                if c.is_ascii_alphabetic() || c == b'_' {
                    let key_start = self.i;
                    let id = self.ident()?;
                    let key_end = self.i;
                    self.ws()?;
                    if self.peek() == Some(b':') {
                        self.i += 1;
                        named = Some((id, (key_start, key_end)));
                    } else {
                        self.i = save;
                    }
                }
            }
            let mut v = self.value()?;
            let key = match named {
                Some((id, kr)) => {
                    v.key_range = Some(kr);
                    Key::Name(id)
                }
                None => Key::Index(out.len()),
            };
            out.push((key, v));
            self.ws()?;
            match self.peek()? {
                b',' => self.i += 1,
                b')' => {}
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_at<'a>(src: &'a str, t: &SpanTree, path: &[Key]) -> &'a str {
        let n = t.get(path).unwrap();
        &src[n.range.0..n.range.1]
    }

    #[test]
    fn finds_nested_values() {
        let src = r#"Flow( // c
            name: "x", /* block /* nested */ */
            vars: (a: 1, b: "a * 2"),
            nets: { "g": Net(nodes: [("fc", "core.linear", (out: 3), ["z"])]) },
        )"#;
        let t = SpanTree::scan(src).unwrap();
        assert_eq!(text_at(src, &t, &["name".into()]), "\"x\"");
        assert_eq!(text_at(src, &t, &["vars".into(), "b".into()]), "\"a * 2\"");
        let p = ["nets".into(), "g".into(), "nodes".into(), 0.into(), 2.into(), "out".into()];
        assert_eq!(text_at(src, &t, &p), "3");
        let p = ["nets".into(), "g".into(), "nodes".into(), 0.into(), 3.into(), 0.into()];
        assert_eq!(text_at(src, &t, &p), "\"z\"");
        let ks = t.key_span(&["nets".into(), "g".into()]).unwrap();
        assert_eq!(&src[ks.offset()..ks.offset() + ks.len()], "\"g\"");
    }

    #[test]
    fn gives_up_without_panicking() {
        for bad in ["", "(", "[1,", "{\"a\" 1}", "r#\"x", "/*", "\u{0}", "Foo(a: [)"] {
            let _ = SpanTree::scan(bad);
        }
        let deep = "[".repeat(10_000);
        assert!(SpanTree::scan(&deep).is_none());
    }
}
