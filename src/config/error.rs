//! Config errors that point at `FILE:LINE:COL`, as `edgegate check` and reloads print them.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file.display(), self.line, self.col, self.message)
    }
}

/// Every problem found in one load, in file order.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    pub fn single(file: &Path, message: impl Into<String>) -> Self {
        ConfigErrors(vec![ConfigError { file: file.to_path_buf(), line: 1, col: 1, message: message.into() }])
    }
}

/// A step of a key path such as `apis[0].routes[2].integration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Builds key paths while validating.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    pub fn root() -> Self {
        KeyPath(vec![])
    }
    pub fn key(&self, k: &str) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Key(k.to_string()));
        KeyPath(v)
    }
    pub fn idx(&self, i: usize) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Index(i));
        KeyPath(v)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.0 {
            match s {
                Seg::Key(k) => {
                    if !first {
                        write!(f, ".")?;
                    }
                    write!(f, "{k}")?;
                }
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// Maps key paths to positions in the source text, through toml_edit's spans.
pub struct Locator {
    doc: Option<toml_edit::ImDocument<String>>,
    line_starts: Vec<usize>,
}

impl Locator {
    pub fn new(src: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        Locator { doc: toml_edit::ImDocument::parse(src.to_string()).ok(), line_starts }
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        (line + 1, offset - self.line_starts[line] + 1)
    }

    /// The position of the deepest part of `path` that exists in the document
    /// (the key itself where there is one), or 1:1.
    pub fn locate(&self, path: &KeyPath) -> (usize, usize) {
        let Some(doc) = &self.doc else { return (1, 1) };
        let mut best: Option<usize> = None;
        let mut cur: Option<Node<'_>> = Some(Node::Table(doc.as_table()));
        for seg in &path.0 {
            let Some(node) = cur.take() else { break };
            match (node, seg) {
                (Node::Table(t), Seg::Key(k)) => {
                    if let Some((key, item)) = t.get_key_value(k) {
                        best = key.span().map(|s| s.start).or_else(|| item.span().map(|s| s.start)).or(best);
                        cur = Node::from_item(item);
                    }
                }
                (Node::Inline(t), Seg::Key(k)) => {
                    if let Some((key, v)) = t.get_key_value(k) {
                        best = key.span().map(|s| s.start).or_else(|| v.span().map(|s| s.start)).or(best);
                        cur = Node::from_item(v);
                    }
                }
                (Node::Tables(a), Seg::Index(i)) => {
                    if let Some(t) = a.get(*i) {
                        best = t.span().map(|s| s.start).or(best);
                        cur = Some(Node::Table(t));
                    }
                }
                (Node::Array(a), Seg::Index(i)) => {
                    if let Some(v) = a.get(*i) {
                        best = v.span().map(|s| s.start).or(best);
                        cur = Node::from_value(v);
                    }
                }
                _ => {}
            }
        }
        best.map(|o| self.line_col(o)).unwrap_or((1, 1))
    }
}

enum Node<'a> {
    Table(&'a toml_edit::Table),
    Inline(&'a toml_edit::InlineTable),
    Tables(&'a toml_edit::ArrayOfTables),
    Array(&'a toml_edit::Array),
}

impl<'a> Node<'a> {
    fn from_item(i: &'a toml_edit::Item) -> Option<Self> {
        match i {
            toml_edit::Item::Table(t) => Some(Node::Table(t)),
            toml_edit::Item::ArrayOfTables(a) => Some(Node::Tables(a)),
            toml_edit::Item::Value(v) => Node::from_value(v),
            toml_edit::Item::None => None,
        }
    }
    fn from_value(v: &'a toml_edit::Value) -> Option<Self> {
        match v {
            toml_edit::Value::InlineTable(t) => Some(Node::Inline(t)),
            toml_edit::Value::Array(a) => Some(Node::Array(a)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_keys_in_tables_arrays_and_inline_tables() {
        let src = "[server]\nlisten = [\"a\"]\n\n[[apis]]\nname = \"x\"\n[[apis]]\nname = \"y\"\nstages = { prod = { variables = { b = \"1\" } } }\n";
        let l = Locator::new(src);
        assert_eq!(l.locate(&KeyPath::root().key("server").key("listen")), (2, 1));
        assert_eq!(l.locate(&KeyPath::root().key("apis").idx(1).key("name")), (7, 1));
        let p = KeyPath::root().key("apis").idx(1).key("stages").key("prod").key("variables");
        assert_eq!(l.locate(&p), (8, 21));
        // a key that does not exist falls back to its nearest existing parent
        assert_eq!(l.locate(&KeyPath::root().key("apis").idx(0).key("routes")), (4, 1));
        assert_eq!(KeyPath::root().key("apis").idx(1).key("name").to_string(), "apis[1].name");
    }
}
