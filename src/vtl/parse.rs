//! The VTL parser: template text into nodes (text, references, directives), with each
//! reference's and directive's byte offset kept for errors. Whitespace follows Velocity 1.7
//! and velocityjs: a directive (`#set`, `#if`, `#elseif`, `#else`, `#end`, `#foreach`,
//! `#break`, `#stop`) takes the line break right after it with it; `##` comments take their
//! line break too.

use super::value::Value;

#[derive(Debug, Clone)]
pub enum Node {
    Text(String),
    Ref { r: Reference, quiet: bool, raw: String },
    Set { target: Reference, value: Expr },
    If { branches: Vec<(Expr, Vec<Node>)>, otherwise: Option<Vec<Node>> },
    Foreach { var: String, iter: Expr, body: Vec<Node>, at: usize },
    Break,
    Stop,
}

#[derive(Debug, Clone)]
pub struct Reference {
    pub root: String,
    pub parts: Vec<Part>,
    pub at: usize,
}

#[derive(Debug, Clone)]
pub enum Part {
    Prop(String),
    Call(String, Vec<Expr>),
    Index(Expr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone)]
pub enum Expr {
    Lit(Literal),
    /// A double-quoted string: references and directives inside are rendered.
    Interp(Vec<Node>),
    Ref(Reference),
    List(Vec<Expr>),
    Map(Vec<(Expr, Expr)>),
    Range(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Bin(Op, Box<Expr>, Box<Expr>, usize),
}

#[derive(Debug, Clone)]
pub enum Literal {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl Literal {
    pub fn value(&self) -> Value {
        match self {
            Literal::Null => Value::Null,
            Literal::Bool(b) => Value::Bool(*b),
            Literal::Int(i) => Value::Int(*i),
            Literal::Float(f) => Value::Float(*f),
            Literal::Str(s) => Value::str(s.as_str()),
        }
    }
}

/// A parse error at a byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub at: usize,
    pub message: String,
}

/// The deepest nesting of directives and expressions a template may have.
const MAX_NESTING: usize = 64;

pub fn parse(src: &str) -> Result<Vec<Node>, ParseError> {
    let mut p = Parser { s: src, i: 0, depth: 0 };
    let (nodes, end) = p.block(&[])?;
    match end {
        None => Ok(nodes),
        Some((word, at)) => Err(ParseError { at, message: format!("#{word} without a matching #if or #foreach") }),
    }
}

struct Parser<'a> {
    s: &'a str,
    i: usize,
    depth: usize,
}

fn ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

const DIRECTIVES: [&str; 9] = ["foreach", "elseif", "else", "break", "stop", "set", "end", "if", "macro"];
const UNSUPPORTED: [&str; 6] = ["macro", "define", "parse", "include", "evaluate", "import"];

impl<'a> Parser<'a> {
    fn err<T>(&self, at: usize, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError { at, message: message.into() })
    }

    fn rest(&self) -> &'a str {
        &self.s[self.i..]
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    fn peek_at(&self, k: usize) -> Option<u8> {
        self.s.as_bytes().get(self.i + k).copied()
    }

    fn nest(&mut self, at: usize) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return self.err(at, format!("nested deeper than {MAX_NESTING} levels"));
        }
        Ok(())
    }

    /// Nodes up to one of `ends` (`end`, `else`, `elseif`): the nodes and the word that ended
    /// them with its offset, or `None` at the end of the text.
    #[allow(clippy::type_complexity)]
    fn block(&mut self, ends: &[&str]) -> Result<(Vec<Node>, Option<(&'static str, usize)>), ParseError> {
        let mut nodes = Vec::new();
        let mut text = String::new();
        while self.i < self.s.len() {
            let r = self.rest();
            if r.starts_with("##") {
                self.i += r.find('\n').map_or(r.len(), |n| n + 1);
                continue;
            }
            if let Some(body) = r.strip_prefix("#*") {
                let Some(n) = body.find("*#") else { return self.err(self.i, "#* comment without its closing *#") };
                self.i += n + 4;
                continue;
            }
            if let Some(body) = r.strip_prefix("#[[") {
                let Some(n) = body.find("]]#") else { return self.err(self.i, "#[[ without its closing ]]#") };
                text.push_str(&body[..n]);
                self.i += n + 6;
                continue;
            }
            if r.starts_with("\\$") || r.starts_with("\\#") {
                // an escaped reference or directive is its text
                text.push_str(&r[1..2]);
                self.i += 2;
                continue;
            }
            if r.starts_with('$') {
                let start = self.i;
                if let Some(node) = self.reference_node()? {
                    if !text.is_empty() {
                        nodes.push(Node::Text(std::mem::take(&mut text)));
                    }
                    nodes.push(node);
                } else {
                    self.i = start + 1;
                    text.push('$');
                }
                continue;
            }
            if r.starts_with('#') {
                let start = self.i;
                if let Some(word) = self.directive_word() {
                    if !text.is_empty() {
                        nodes.push(Node::Text(std::mem::take(&mut text)));
                    }
                    if ends.contains(&word) {
                        return Ok((nodes, Some((word, start))));
                    }
                    match word {
                        "end" | "else" | "elseif" => {
                            return self.err(start, format!("#{word} without a matching #if or #foreach"))
                        }
                        _ => nodes.push(self.directive(word, start)?),
                    }
                    continue;
                }
                self.i = start + 1;
                text.push('#');
                continue;
            }
            let n = r.find(['$', '#', '\\']).unwrap_or(r.len()).max(1);
            let n = (1..=n).rev().find(|&k| r.is_char_boundary(k)).unwrap_or(n);
            text.push_str(&r[..n]);
            self.i += n;
        }
        if !text.is_empty() {
            nodes.push(Node::Text(text));
        }
        Ok((nodes, None))
    }

    /// `#word` or `#{word}` of a directive at the cursor; the cursor moves past it. An unknown
    /// word leaves the cursor and is `None` (the `#` is text).
    fn directive_word(&mut self) -> Option<&'static str> {
        let r = &self.rest()[1..];
        let (body, braced) = match r.strip_prefix('{') {
            Some(b) => (b, true),
            None => (r, false),
        };
        let len = body.bytes().take_while(|c| c.is_ascii_alphabetic()).count();
        let word = &body[..len];
        let known = DIRECTIVES.iter().chain(UNSUPPORTED.iter()).find(|d| **d == word)?;
        if braced && body.as_bytes().get(len) != Some(&b'}') {
            return None;
        }
        // `#end` in `#endif` is not a directive
        if !braced && body.as_bytes().get(len).is_some_and(|c| ident_char(*c)) {
            return None;
        }
        self.i += 1 + len + if braced { 2 } else { 0 };
        Some(known)
    }

    fn eat_newline(&mut self) {
        if self.rest().starts_with("\r\n") {
            self.i += 2;
        } else if self.rest().starts_with('\n') {
            self.i += 1;
        }
    }

    fn directive(&mut self, word: &'static str, at: usize) -> Result<Node, ParseError> {
        if UNSUPPORTED.contains(&word) {
            return self.err(at, format!("#{word} is not supported in API Gateway templates"));
        }
        self.nest(at)?;
        let node = match word {
            "set" => {
                self.open_paren(at, "#set")?;
                self.ws();
                if self.peek() != Some(b'$') {
                    return self.err(self.i, "#set needs a reference to assign to, as in #set($x = 1)");
                }
                let target =
                    self.reference()?.ok_or_else(|| ParseError { at: self.i, message: "bad reference".into() })?;
                self.ws();
                if self.peek() != Some(b'=') {
                    return self.err(self.i, "#set needs `=`");
                }
                self.i += 1;
                let value = self.expr()?;
                self.close_paren(at, "#set")?;
                self.eat_newline();
                Node::Set { target, value }
            }
            "if" => {
                let mut branches = Vec::new();
                let mut cond = self.condition(at, "#if")?;
                let otherwise;
                loop {
                    let (body, end) = self.block(&["elseif", "else", "end"])?;
                    branches.push((cond, body));
                    match end {
                        Some(("elseif", a)) => cond = self.condition(a, "#elseif")?,
                        Some(("else", _)) => {
                            self.eat_newline();
                            let (body, end) = self.block(&["end"])?;
                            if end.is_none() {
                                return self.err(at, "#if without its #end");
                            }
                            self.eat_newline();
                            otherwise = Some(body);
                            break;
                        }
                        Some(_) => {
                            self.eat_newline();
                            otherwise = None;
                            break;
                        }
                        None => return self.err(at, "#if without its #end"),
                    }
                }
                Node::If { branches, otherwise }
            }
            "foreach" => {
                self.open_paren(at, "#foreach")?;
                self.ws();
                if self.peek() != Some(b'$') {
                    return self.err(self.i, "#foreach needs a loop variable, as in #foreach($x in $list)");
                }
                self.i += 1;
                let var =
                    self.ident().ok_or_else(|| ParseError { at: self.i, message: "a loop variable name".into() })?;
                self.ws();
                if !self.rest().starts_with("in") || self.peek_at(2).is_some_and(ident_char) {
                    return self.err(self.i, "#foreach needs `in`");
                }
                self.i += 2;
                let iter = self.expr()?;
                self.close_paren(at, "#foreach")?;
                self.eat_newline();
                let (body, end) = self.block(&["end"])?;
                if end.is_none() {
                    return self.err(at, "#foreach without its #end");
                }
                self.eat_newline();
                Node::Foreach { var, iter, body, at }
            }
            "break" => {
                self.eat_newline();
                Node::Break
            }
            "stop" => {
                self.eat_newline();
                Node::Stop
            }
            _ => return self.err(at, format!("#{word} is not supported")),
        };
        self.depth -= 1;
        Ok(node)
    }

    fn condition(&mut self, at: usize, what: &str) -> Result<Expr, ParseError> {
        self.open_paren(at, what)?;
        let e = self.expr()?;
        self.close_paren(at, what)?;
        self.eat_newline();
        Ok(e)
    }

    fn open_paren(&mut self, at: usize, what: &str) -> Result<(), ParseError> {
        self.ws();
        if self.peek() != Some(b'(') {
            return self.err(at, format!("{what} needs `(`"));
        }
        self.i += 1;
        Ok(())
    }

    fn close_paren(&mut self, at: usize, what: &str) -> Result<(), ParseError> {
        self.ws();
        if self.peek() != Some(b')') {
            let _ = at;
            return self.err(self.i, format!("{what}: `)` expected"));
        }
        self.i += 1;
        Ok(())
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn ident(&mut self) -> Option<String> {
        let r = self.rest().as_bytes();
        if !r.first().is_some_and(|c| ident_start(*c)) {
            return None;
        }
        let n = r.iter().take_while(|c| ident_char(**c)).count();
        let id = self.rest()[..n].to_string();
        self.i += n;
        Some(id)
    }

    /// A reference in text: `$x…`, `$!x…`, `${x…}`, `$!{x…}`. `None` (cursor unspecified) when
    /// the `$` starts no reference.
    fn reference_node(&mut self) -> Result<Option<Node>, ParseError> {
        let start = self.i;
        self.i += 1;
        let quiet = self.peek() == Some(b'!');
        if quiet {
            self.i += 1;
        }
        let braced = self.peek() == Some(b'{');
        if braced {
            self.i += 1;
        }
        let at = self.i;
        let Some(root) = self.ident() else { return Ok(None) };
        let parts = self.parts(!braced)?;
        if braced {
            if self.peek() != Some(b'}') {
                return Ok(None);
            }
            self.i += 1;
        }
        let raw = self.s[start..self.i].to_string();
        Ok(Some(Node::Ref { r: Reference { root, parts, at }, quiet, raw }))
    }

    /// A reference inside an expression (`$x.y(…)[0]`, also `${x}`, `$!x`).
    fn reference(&mut self) -> Result<Option<Reference>, ParseError> {
        match self.reference_node()? {
            Some(Node::Ref { r, .. }) => Ok(Some(r)),
            _ => Ok(None),
        }
    }

    /// `.name`, `.name(args)` and `[index]` after a reference's root. In text (`lenient`), a
    /// `.` not followed by a name ends the reference and stays text.
    fn parts(&mut self, lenient: bool) -> Result<Vec<Part>, ParseError> {
        let mut parts = Vec::new();
        loop {
            match self.peek() {
                Some(b'.') if self.peek_at(1).is_some_and(ident_start) => {
                    self.i += 1;
                    let name = self.ident().unwrap_or_default();
                    if self.peek() == Some(b'(') {
                        let at = self.i;
                        self.i += 1;
                        self.nest(at)?;
                        let args = self.args(b')')?;
                        self.depth -= 1;
                        parts.push(Part::Call(name, args));
                    } else {
                        parts.push(Part::Prop(name));
                    }
                }
                Some(b'[') => {
                    let save = self.i;
                    self.i += 1;
                    self.nest(save)?;
                    let idx = self.expr();
                    self.depth -= 1;
                    self.ws();
                    match idx {
                        Ok(e) if self.peek() == Some(b']') => {
                            self.i += 1;
                            parts.push(Part::Index(e));
                        }
                        _ if lenient => {
                            self.i = save;
                            break;
                        }
                        Err(e) => return Err(e),
                        Ok(_) => return self.err(self.i, "`]` expected"),
                    }
                }
                _ => break,
            }
        }
        Ok(parts)
    }

    /// Comma-separated expressions up to `close`.
    fn args(&mut self, close: u8) -> Result<Vec<Expr>, ParseError> {
        let mut args = Vec::new();
        self.ws();
        if self.peek() == Some(close) {
            self.i += 1;
            return Ok(args);
        }
        loop {
            args.push(self.expr()?);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(c) if c == close => {
                    self.i += 1;
                    return Ok(args);
                }
                _ => return self.err(self.i, format!("`,` or `{}` expected", close as char)),
            }
        }
    }

    pub fn expr(&mut self) -> Result<Expr, ParseError> {
        let at = self.i;
        self.nest(at)?;
        let e = self.binary(0);
        self.depth -= 1;
        e
    }

    /// Operators by precedence level: or, and, equality, relation, sum, product.
    fn op_at(&self, level: usize) -> Option<(Op, usize)> {
        let r = self.rest();
        let word = |w: &str| r.starts_with(w) && !r.as_bytes().get(w.len()).is_some_and(|c| ident_char(*c));
        let table: &[(&str, Op, bool)] = match level {
            0 => &[("||", Op::Or, false), ("or", Op::Or, true)],
            1 => &[("&&", Op::And, false), ("and", Op::And, true)],
            2 => &[("==", Op::Eq, false), ("!=", Op::Ne, false), ("eq", Op::Eq, true), ("ne", Op::Ne, true)],
            3 => &[
                ("<=", Op::Le, false),
                (">=", Op::Ge, false),
                ("<", Op::Lt, false),
                (">", Op::Gt, false),
                ("le", Op::Le, true),
                ("ge", Op::Ge, true),
                ("lt", Op::Lt, true),
                ("gt", Op::Gt, true),
            ],
            4 => &[("+", Op::Add, false), ("-", Op::Sub, false)],
            _ => &[("*", Op::Mul, false), ("/", Op::Div, false), ("%", Op::Rem, false)],
        };
        table.iter().find(|(t, _, w)| if *w { word(t) } else { r.starts_with(t) }).map(|(t, op, _)| (*op, t.len()))
    }

    fn binary(&mut self, level: usize) -> Result<Expr, ParseError> {
        if level > 5 {
            return self.unary();
        }
        let mut left = self.binary(level + 1)?;
        loop {
            self.ws();
            let Some((op, len)) = self.op_at(level) else { return Ok(left) };
            // `..` of a range is not a binary operator; `-` followed by `..` neither
            let at = self.i;
            self.i += len;
            let right = self.binary(level + 1)?;
            left = Expr::Bin(op, Box::new(left), Box::new(right), at);
        }
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        self.ws();
        let r = self.rest();
        if r.starts_with('!') && !r.starts_with("!=") {
            self.i += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if r.starts_with("not") && !r.as_bytes().get(3).is_some_and(|c| ident_char(*c)) {
            self.i += 3;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if r.starts_with('-') && !r[1..].starts_with(|c: char| c.is_ascii_digit()) {
            self.i += 1;
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        self.ws();
        let at = self.i;
        let r = self.rest();
        let Some(c) = r.bytes().next() else { return self.err(at, "an expression was expected, the text ended") };
        match c {
            b'$' => match self.reference()? {
                Some(r) => Ok(Expr::Ref(r)),
                None => self.err(at, "a reference name was expected after `$`"),
            },
            b'\'' | b'"' => {
                let Some(n) = r[1..].find(c as char) else { return self.err(at, "a string without its closing quote") };
                let body = &r[1..1 + n];
                self.i += n + 2;
                if c == b'"' && (body.contains('$') || body.contains('#')) {
                    let nodes = parse(body).map_err(|e| ParseError { at: at + 1 + e.at, message: e.message })?;
                    Ok(Expr::Interp(nodes))
                } else {
                    Ok(Expr::Lit(Literal::Str(body.to_string())))
                }
            }
            b'0'..=b'9' | b'-' => {
                let b = r.as_bytes();
                let mut n = usize::from(c == b'-');
                while b.get(n).is_some_and(u8::is_ascii_digit) {
                    n += 1;
                }
                let float = b.get(n) == Some(&b'.') && b.get(n + 1).is_some_and(u8::is_ascii_digit);
                if float {
                    n += 1;
                    while b.get(n).is_some_and(u8::is_ascii_digit) {
                        n += 1;
                    }
                }
                let text = &r[..n];
                self.i += n;
                if float {
                    text.parse().map(|f| Expr::Lit(Literal::Float(f))).or_else(|_| self.err(at, "a bad number"))
                } else {
                    text.parse().map(|i| Expr::Lit(Literal::Int(i))).or_else(|_| self.err(at, "a number out of range"))
                }
            }
            b'[' => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(Expr::List(vec![]));
                }
                let first = self.expr()?;
                self.ws();
                if self.rest().starts_with("..") {
                    self.i += 2;
                    let last = self.expr()?;
                    self.ws();
                    if self.peek() != Some(b']') {
                        return self.err(self.i, "`]` expected after a range");
                    }
                    self.i += 1;
                    return Ok(Expr::Range(Box::new(first), Box::new(last)));
                }
                let mut items = vec![first];
                loop {
                    self.ws();
                    match self.peek() {
                        Some(b',') => {
                            self.i += 1;
                            items.push(self.expr()?);
                        }
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Expr::List(items));
                        }
                        _ => return self.err(self.i, "`,` or `]` expected in a list"),
                    }
                }
            }
            b'{' => {
                self.i += 1;
                let mut entries = Vec::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(Expr::Map(entries));
                }
                loop {
                    let k = self.expr()?;
                    self.ws();
                    if self.peek() != Some(b':') {
                        return self.err(self.i, "`:` expected in a map");
                    }
                    self.i += 1;
                    let v = self.expr()?;
                    entries.push((k, v));
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Expr::Map(entries));
                        }
                        _ => return self.err(self.i, "`,` or `}` expected in a map"),
                    }
                }
            }
            b'(' => {
                self.i += 1;
                let e = self.expr()?;
                self.ws();
                if self.peek() != Some(b')') {
                    return self.err(self.i, "`)` expected");
                }
                self.i += 1;
                Ok(e)
            }
            _ => {
                for (w, lit) in
                    [("true", Literal::Bool(true)), ("false", Literal::Bool(false)), ("null", Literal::Null)]
                {
                    if r.starts_with(w) && !r.as_bytes().get(w.len()).is_some_and(|c| ident_char(*c)) {
                        self.i += w.len();
                        return Ok(Expr::Lit(lit));
                    }
                }
                self.err(at, format!("unexpected `{}` in an expression", r.chars().next().unwrap_or(' ')))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_point_at_the_problem() {
        let e = parse("ok\n#if($a\nx").expect_err("unclosed");
        assert_eq!(e.at, 10, "{e:?}"); // the `x` where `)` belongs
        assert!(parse("#end").is_err());
        assert!(parse("#foreach($x in $l)").expect_err("no end").message.contains("#end"));
        assert!(parse("#macro(x)#end").expect_err("macro").message.contains("not supported"));
        assert!(parse("#set($a = 'unterminated)").is_err());
    }

    #[test]
    fn text_that_is_not_vtl_stays_text() {
        for t in ["a # b", "price: $5", "#endif", "$.x", "50% #1", "a$"] {
            let nodes = parse(t).expect("parses");
            assert!(nodes.iter().all(|n| matches!(n, Node::Text(_))), "{t}: {nodes:?}");
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = "#if(true)".repeat(200) + &"#end".repeat(200);
        assert!(parse(&deep).expect_err("too deep").message.contains("nested"));
        let deep = format!("$x{}", ".a(".repeat(100));
        assert!(parse(&deep).is_err());
        let deep = format!("#set($a = {}1{})", "(".repeat(500), ")".repeat(500));
        assert!(parse(&deep).is_err());
    }
}
