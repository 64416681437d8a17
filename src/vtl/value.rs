//! VTL values: what a reference, a literal or a method call yields while a template renders.
//! Lists and maps are shared and mutable, as Java's are (`$list.add(…)` changes the list every
//! reference to it sees); a value renders as Java's `toString` would (`{a=1, b=[1, 2]}`).

use std::cell::RefCell;
use std::fmt::Write;
use std::rc::Rc;

pub type List = Rc<RefCell<Vec<Value>>>;
/// Insertion-ordered, as the JSON objects and map literals templates build them from.
pub type Map = Rc<RefCell<Vec<(String, Value)>>>;

#[derive(Clone, Debug, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    List(List),
    Map(Map),
    /// `$input`, `$util`: objects whose methods the engine provides.
    Builtin(Builtin),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builtin {
    Input,
    Util,
}

impl Value {
    pub fn str(s: impl Into<Rc<str>>) -> Value {
        Value::Str(s.into())
    }

    pub fn list(items: Vec<Value>) -> Value {
        Value::List(Rc::new(RefCell::new(items)))
    }

    pub fn map(entries: Vec<(String, Value)>) -> Value {
        Value::Map(Rc::new(RefCell::new(entries)))
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// `#if` truth: null and false are false, and so are an empty string, list or map (as
    /// Velocity 2 and velocityjs have it); everything else is true.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.borrow().is_empty(),
            Value::Map(m) => !m.borrow().is_empty(),
            _ => true,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The value as Java's `String.valueOf` writes it.
    pub fn render(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => java_double(*f, out),
            Value::Str(s) => out.push_str(s),
            Value::List(l) => {
                out.push('[');
                for (i, v) in l.borrow().iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.render(out);
                }
                out.push(']');
            }
            Value::Map(m) => {
                out.push('{');
                for (i, (k, v)) in m.borrow().iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(k);
                    out.push('=');
                    v.render(out);
                }
                out.push('}');
            }
            Value::Builtin(b) => out.push_str(match b {
                Builtin::Input => "$input",
                Builtin::Util => "$util",
            }),
        }
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        self.render(&mut s);
        s
    }

    /// Equality as `==` has it: numbers by value, strings, booleans and null by value, and
    /// values of different kinds by their text (Velocity compares `toString`s).
    pub fn equals(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Null, _) | (_, Value::Null) => false,
            (a, b) if a.as_f64().is_some() && b.as_f64().is_some() => a.as_f64() == b.as_f64(),
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::List(a), Value::List(b)) => {
                let (a, b) = (a.borrow(), b.borrow());
                a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| x.equals(y))
            }
            (a, b) => a.to_text() == b.to_text(),
        }
    }

    /// JSON → value (numbers keep integer-ness).
    pub fn from_json(j: &serde_json::Value) -> Value {
        match j {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(0.0)),
            },
            serde_json::Value::String(s) => Value::str(s.as_str()),
            serde_json::Value::Array(a) => Value::list(a.iter().map(Value::from_json).collect()),
            serde_json::Value::Object(o) => {
                Value::map(o.iter().map(|(k, v)| (k.clone(), Value::from_json(v))).collect())
            }
        }
    }

    /// Value → JSON (`$util.toJson`, `$input.json`).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null | Value::Builtin(_) => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, serde_json::Value::Number)
            }
            Value::Str(s) => serde_json::Value::String(s.to_string()),
            Value::List(l) => serde_json::Value::Array(l.borrow().iter().map(Value::to_json).collect()),
            Value::Map(m) => {
                serde_json::Value::Object(m.borrow().iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }

    /// A map's value for `key`.
    pub fn get(&self, key: &str) -> Option<Value> {
        match self {
            Value::Map(m) => m.borrow().iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()),
            _ => None,
        }
    }
}

/// Sets `k` in an insertion-ordered map; the value it replaced.
pub fn put(m: &mut Vec<(String, Value)>, k: &str, v: Value) -> Option<Value> {
    match m.iter_mut().find(|(x, _)| x == k) {
        Some((_, old)) => Some(std::mem::replace(old, v)),
        None => {
            m.push((k.to_string(), v));
            None
        }
    }
}

/// Java's `Double.toString`: `1.0`, `0.5`, `1.0E10`, `1.234E-5`, `NaN`, `Infinity`.
fn java_double(f: f64, out: &mut String) {
    if f.is_nan() {
        out.push_str("NaN");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
    } else if f == 0.0 {
        out.push_str(if f.is_sign_negative() { "-0.0" } else { "0.0" });
    } else if (1e-3..1e7).contains(&f.abs()) {
        let s = format!("{f}");
        out.push_str(&s);
        if !s.contains('.') {
            out.push_str(".0");
        }
    } else {
        // d.dddE±n with the shortest digits that give the number back
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        out.push_str(mantissa);
        if !mantissa.contains('.') {
            out.push_str(".0");
        }
        out.push('E');
        out.push_str(exp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_as_java_does() {
        let v = Value::map(vec![
            ("a".into(), Value::Int(1)),
            ("b".into(), Value::list(vec![Value::Int(1), Value::Float(2.5), Value::Null])),
        ]);
        assert_eq!(v.to_text(), "{a=1, b=[1, 2.5, null]}");
        for (f, s) in [(1.0, "1.0"), (0.5, "0.5"), (1e10, "1.0E10"), (1.25e-5, "1.25E-5"), (123.0, "123.0")] {
            assert_eq!(Value::Float(f).to_text(), s);
        }
    }

    #[test]
    fn equality_across_kinds() {
        assert!(Value::Int(1).equals(&Value::Float(1.0)));
        assert!(Value::Int(1).equals(&Value::str("1")));
        assert!(!Value::Null.equals(&Value::str("")));
    }
}
