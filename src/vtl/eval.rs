//! The VTL evaluator: renders parsed nodes against the variables of one request, within
//! limits. Every step, loop iteration and byte a template makes is counted, so a template
//! can neither hang nor exhaust memory: past a limit the render fails with the line it was
//! on.

use super::aws;
use super::parse::{Expr, Literal, Node, Op, Part, Reference};
use super::value::{put, Builtin, Value};
use super::{Limits, RenderError};
use std::collections::HashMap;

/// Why a render ended early.
pub(crate) enum Flow {
    Break,
    Stop,
    Fail(RenderError),
}

impl From<RenderError> for Flow {
    fn from(e: RenderError) -> Flow {
        Flow::Fail(e)
    }
}

pub(crate) struct Renderer<'a> {
    pub vars: HashMap<String, Value>,
    pub input: Option<&'a aws::Input>,
    pub limits: &'a Limits,
    /// Offsets of line starts in the template, for errors.
    pub lines: &'a [usize],
    pub steps: usize,
    pub budget: usize,
    pub out: String,
}

impl Renderer<'_> {
    pub fn fail(&self, at: usize, message: impl Into<String>) -> Flow {
        Flow::Fail(self.error(at, message))
    }

    pub fn error(&self, at: usize, message: impl Into<String>) -> RenderError {
        let line = self.lines.partition_point(|&s| s <= at);
        RenderError { line: line.max(1), message: message.into() }
    }

    fn step(&mut self, at: usize) -> Result<(), Flow> {
        self.steps += 1;
        if self.steps > self.limits.max_steps {
            return Err(self.fail(at, format!("the template ran more than {} steps", self.limits.max_steps)));
        }
        Ok(())
    }

    /// Takes `n` bytes from the render's memory budget.
    pub fn spend(&mut self, at: usize, n: usize) -> Result<(), Flow> {
        match self.budget.checked_sub(n) {
            Some(b) => {
                self.budget = b;
                Ok(())
            }
            None => Err(self.fail(at, "the template made more data than it may")),
        }
    }

    fn emit(&mut self, at: usize, s: &str) -> Result<(), Flow> {
        if self.out.len() + s.len() > self.limits.max_output {
            return Err(self.fail(at, format!("the output is larger than {} bytes", self.limits.max_output)));
        }
        self.out.push_str(s);
        Ok(())
    }

    pub fn nodes(&mut self, nodes: &[Node]) -> Result<(), Flow> {
        for n in nodes {
            self.node(n)?;
        }
        Ok(())
    }

    fn node(&mut self, n: &Node) -> Result<(), Flow> {
        match n {
            Node::Text(t) => self.emit(0, t),
            Node::Ref { r, quiet, raw } => {
                self.step(r.at)?;
                let v = self.reference(r)?;
                // API Gateway renders a null reference as nothing, quiet or not (Velocity
                // itself would write the reference's text)
                let _ = (quiet, raw);
                match v {
                    Value::Null => Ok(()),
                    v => {
                        let mut s = String::new();
                        v.render(&mut s);
                        self.emit(r.at, &s)
                    }
                }
            }
            Node::Set { target, value } => {
                self.step(target.at)?;
                let v = self.expr(value)?;
                // as Velocity 1.7: a null value leaves the target as it was
                if v.is_null() {
                    return Ok(());
                }
                self.assign(target, v)
            }
            Node::If { branches, otherwise } => {
                for (cond, body) in branches {
                    if self.expr(cond)?.truthy() {
                        return self.nodes(body);
                    }
                }
                match otherwise {
                    Some(body) => self.nodes(body),
                    None => Ok(()),
                }
            }
            Node::Foreach { var, iter, body, at } => self.foreach(var, iter, body, *at),
            Node::Break => Err(Flow::Break),
            Node::Stop => Err(Flow::Stop),
        }
    }

    fn foreach(&mut self, var: &str, iter: &Expr, body: &[Node], at: usize) -> Result<(), Flow> {
        let items: Vec<Value> = match self.expr(iter)? {
            Value::List(l) => l.borrow().clone(),
            Value::Map(m) => m.borrow().iter().map(|(_, v)| v.clone()).collect(),
            Value::Null => return Ok(()),
            other => vec![other],
        };
        if items.len() > self.limits.max_iterations {
            return Err(self.fail(at, format!("#foreach over more than {} items", self.limits.max_iterations)));
        }
        let saved =
            (self.vars.get(var).cloned(), self.vars.get("foreach").cloned(), self.vars.get("velocityCount").cloned());
        let n = items.len();
        let mut result = Ok(());
        for (i, item) in items.into_iter().enumerate() {
            self.step(at)?;
            self.vars.insert(var.to_string(), item);
            let state = Value::map(vec![
                ("index".into(), Value::Int(i as i64)),
                ("count".into(), Value::Int(i as i64 + 1)),
                ("hasNext".into(), Value::Bool(i + 1 < n)),
                ("first".into(), Value::Bool(i == 0)),
                ("last".into(), Value::Bool(i + 1 == n)),
            ]);
            self.vars.insert("foreach".into(), state);
            self.vars.insert("velocityCount".into(), Value::Int(i as i64 + 1));
            match self.nodes(body) {
                Ok(()) => {}
                Err(Flow::Break) => break,
                Err(other) => {
                    result = Err(other);
                    break;
                }
            }
        }
        for (name, old) in [(var, saved.0), ("foreach", saved.1), ("velocityCount", saved.2)] {
            match old {
                Some(v) => self.vars.insert(name.to_string(), v),
                None => self.vars.remove(name),
            };
        }
        result
    }

    fn assign(&mut self, target: &Reference, v: Value) -> Result<(), Flow> {
        if target.parts.is_empty() {
            self.vars.insert(target.root.clone(), v);
            return Ok(());
        }
        // `#set($map.key = v)` / `#set($list[0] = v)`: into the object the path leads to
        let (last, path) = target.parts.split_last().expect("parts");
        let mut obj = self.vars.get(&target.root).cloned().unwrap_or_default();
        for p in path {
            obj = self.part(obj, p, target.at)?;
        }
        match (obj, last) {
            (Value::Map(m), Part::Prop(k)) => {
                put(&mut m.borrow_mut(), k, v);
                Ok(())
            }
            (Value::Map(m), Part::Index(e)) => {
                let k = self.expr(e)?.to_text();
                put(&mut m.borrow_mut(), &k, v);
                Ok(())
            }
            (Value::List(l), Part::Index(e)) => {
                let i = self.expr(e)?;
                let mut l = l.borrow_mut();
                match i {
                    Value::Int(i) if i >= 0 && (i as usize) < l.len() => {
                        l[i as usize] = v;
                        Ok(())
                    }
                    _ => Err(self.fail(target.at, "#set: list index out of range")),
                }
            }
            _ => Ok(()), // as Velocity: nothing to set into
        }
    }

    pub fn reference(&mut self, r: &Reference) -> Result<Value, Flow> {
        let mut v = match r.root.as_str() {
            "input" if self.input.is_some() && !self.vars.contains_key("input") => Value::Builtin(Builtin::Input),
            "util" if !self.vars.contains_key("util") => Value::Builtin(Builtin::Util),
            root => self.vars.get(root).cloned().unwrap_or_default(),
        };
        for p in &r.parts {
            if v.is_null() {
                return Ok(Value::Null);
            }
            v = self.part(v, p, r.at)?;
        }
        Ok(v)
    }

    fn part(&mut self, v: Value, p: &Part, at: usize) -> Result<Value, Flow> {
        self.step(at)?;
        match p {
            Part::Prop(name) if matches!(v, Value::Builtin(Builtin::Input)) => {
                Ok(aws::input_property(self.input, name))
            }
            Part::Prop(name) => Ok(property(&v, name)),
            Part::Index(e) => {
                let i = self.expr(e)?;
                Ok(match (&v, &i) {
                    (Value::List(l), Value::Int(i)) => {
                        let l = l.borrow();
                        let i = if *i < 0 { l.len() as i64 + i } else { *i };
                        usize::try_from(i).ok().and_then(|i| l.get(i).cloned()).unwrap_or_default()
                    }
                    (Value::Map(_), k) => v.get(&k.to_text()).unwrap_or_default(),
                    _ => Value::Null,
                })
            }
            Part::Call(name, args) => {
                let mut vals = Vec::with_capacity(args.len());
                for a in args {
                    vals.push(self.expr(a)?);
                }
                let r = match &v {
                    Value::Builtin(Builtin::Input) => aws::input_method(self.input, name, &vals),
                    Value::Builtin(Builtin::Util) => aws::util_method(name, &vals),
                    _ => super::methods::call(&v, name, &vals),
                }
                .map_err(|why| self.fail(at, why))?;
                // what the call made counts against the render's budget
                let made = match &r {
                    Value::Str(s) => s.len(),
                    Value::List(l) => 16 * l.borrow().len(),
                    Value::Map(m) => 32 * m.borrow().len(),
                    _ => 0,
                };
                self.spend(at, made)?;
                Ok(r)
            }
        }
    }

    pub fn expr(&mut self, e: &Expr) -> Result<Value, Flow> {
        match e {
            Expr::Lit(l) => Ok(l.value()),
            Expr::Ref(r) => self.reference(r),
            Expr::Interp(nodes) => {
                let outer = std::mem::take(&mut self.out);
                let r = self.nodes(nodes);
                let s = std::mem::replace(&mut self.out, outer);
                r?;
                self.spend(0, s.len())?;
                Ok(Value::str(s))
            }
            Expr::List(items) => {
                let mut l = Vec::with_capacity(items.len());
                for i in items {
                    l.push(self.expr(i)?);
                }
                self.spend(0, 16 * l.len())?;
                Ok(Value::list(l))
            }
            Expr::Map(entries) => {
                let mut m: Vec<(String, Value)> = Vec::with_capacity(entries.len());
                for (k, v) in entries {
                    let k = self.expr(k)?.to_text();
                    let v = self.expr(v)?;
                    put(&mut m, &k, v);
                }
                self.spend(0, 32 * m.len())?;
                Ok(Value::map(m))
            }
            Expr::Range(a, b) => {
                let (a, b) = (self.expr(a)?, self.expr(b)?);
                let (Some(a), Some(b)) = (int(&a), int(&b)) else { return Ok(Value::Null) };
                let len = a.abs_diff(b).saturating_add(1);
                if len > self.limits.max_iterations as u64 {
                    return Err(self.fail(0, format!("a range of more than {} items", self.limits.max_iterations)));
                }
                self.spend(0, 16 * len as usize)?;
                let items =
                    if a <= b { (a..=b).map(Value::Int).collect() } else { (b..=a).rev().map(Value::Int).collect() };
                Ok(Value::list(items))
            }
            Expr::Not(e) => Ok(Value::Bool(!self.expr(e)?.truthy())),
            Expr::Neg(e) => Ok(match self.expr(e)? {
                Value::Int(i) => i.checked_neg().map_or(Value::Null, Value::Int),
                Value::Float(f) => Value::Float(-f),
                _ => Value::Null,
            }),
            Expr::Bin(op, a, b, at) => self.binary(*op, a, b, *at),
        }
    }

    fn binary(&mut self, op: Op, a: &Expr, b: &Expr, at: usize) -> Result<Value, Flow> {
        self.step(at)?;
        let l = self.expr(a)?;
        match op {
            Op::And => return Ok(Value::Bool(l.truthy() && self.expr(b)?.truthy())),
            Op::Or => return Ok(Value::Bool(l.truthy() || self.expr(b)?.truthy())),
            _ => {}
        }
        let r = self.expr(b)?;
        Ok(match op {
            Op::Eq => Value::Bool(l.equals(&r)),
            Op::Ne => Value::Bool(!l.equals(&r)),
            Op::Lt | Op::Le | Op::Gt | Op::Ge => {
                let ord = match (l.as_f64(), r.as_f64(), &l, &r) {
                    (Some(x), Some(y), _, _) => x.partial_cmp(&y),
                    (_, _, Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
                    _ => None,
                };
                let Some(ord) = ord else { return Err(self.fail(at, "cannot compare these values")) };
                Value::Bool(match op {
                    Op::Lt => ord.is_lt(),
                    Op::Le => ord.is_le(),
                    Op::Gt => ord.is_gt(),
                    _ => ord.is_ge(),
                })
            }
            Op::Add if matches!(l, Value::Str(_)) || matches!(r, Value::Str(_)) => {
                let s = format!("{}{}", l.to_text(), r.to_text());
                self.spend(at, s.len())?;
                Value::str(s)
            }
            _ => arithmetic(op, &l, &r),
        })
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `+ - * / %` as Java has them: integers stay integers (division truncates), a float makes
/// the result a float, and division by zero (or an overflow) is null.
fn arithmetic(op: Op, l: &Value, r: &Value) -> Value {
    match (l, r) {
        (Value::Int(a), Value::Int(b)) => {
            let (a, b) = (*a, *b);
            match op {
                Op::Add => a.checked_add(b),
                Op::Sub => a.checked_sub(b),
                Op::Mul => a.checked_mul(b),
                Op::Div => a.checked_div(b),
                _ => a.checked_rem(b),
            }
            .map_or(Value::Null, Value::Int)
        }
        _ => match (l.as_f64(), r.as_f64()) {
            (Some(a), Some(b)) => match op {
                Op::Add => Value::Float(a + b),
                Op::Sub => Value::Float(a - b),
                Op::Mul => Value::Float(a * b),
                Op::Div if b == 0.0 => Value::Null,
                Op::Div => Value::Float(a / b),
                _ if b == 0.0 => Value::Null,
                _ => Value::Float(a % b),
            },
            _ => Value::Null,
        },
    }
}

/// `$x.name`: a map's entry, or the Java getter a template means (`$list.size` is not one:
/// only `empty` for `isEmpty()` and `class`-less bean names resolve on lists and strings).
fn property(v: &Value, name: &str) -> Value {
    match v {
        Value::Map(_) => v.get(name).unwrap_or_default(),
        Value::List(l) if name == "empty" => Value::Bool(l.borrow().is_empty()),
        Value::Str(s) if name == "empty" => Value::Bool(s.is_empty()),
        _ => Value::Null,
    }
}

impl From<&Literal> for Value {
    fn from(l: &Literal) -> Value {
        l.value()
    }
}
