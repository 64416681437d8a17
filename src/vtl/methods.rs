//! The Java methods templates call on strings, lists and maps, with Java's results
//! (`indexOf` is -1 when absent, `substring` out of range fails, `replaceAll` takes a regular
//! expression). A method the engine does not know is a render error that names it.

use super::value::{put, Value};

fn arg_int(args: &[Value], i: usize) -> Result<i64, String> {
    match args.get(i) {
        Some(Value::Int(n)) => Ok(*n),
        Some(Value::Float(f)) if f.fract() == 0.0 => Ok(*f as i64),
        Some(Value::Str(s)) if s.trim().parse::<i64>().is_ok() => Ok(s.trim().parse().unwrap_or(0)),
        _ => Err(format!("argument {} must be a number", i + 1)),
    }
}

fn arg_str(args: &[Value], i: usize) -> String {
    args.get(i).map(Value::to_text).unwrap_or_default()
}

fn compile_regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("bad regular expression {pattern:?}: {e}"))
}

/// Java's `Matcher.replaceAll` replacement: `$1` / `${name}` groups, `\$` a dollar.
fn java_replacement(rep: &str) -> String {
    let mut out = String::with_capacity(rep.len());
    let mut chars = rep.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    if n == '$' {
                        out.push_str("$$");
                    } else {
                        out.push(n);
                    }
                }
            }
            '$' if chars.peek().is_some_and(|d| d.is_ascii_digit()) => {
                let mut n = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    n.push(*d);
                    chars.next();
                }
                out.push_str(&format!("${{{n}}}"));
            }
            _ => out.push(c),
        }
    }
    out
}

/// Character (UTF-16 in Java; here: Unicode scalar) positions → byte offsets.
fn char_range(s: &str, from: i64, to: i64) -> Option<(usize, usize)> {
    let n = s.chars().count() as i64;
    if from < 0 || to > n || from > to {
        return None;
    }
    let byte = |k: i64| s.char_indices().nth(k as usize).map_or(s.len(), |(b, _)| b);
    Some((byte(from), byte(to)))
}

/// Calls `name` on `v`; an error says why (the caller adds where).
pub(crate) fn call(v: &Value, name: &str, args: &[Value]) -> Result<Value, String> {
    let unknown = || format!("no method {name}() with {} argument(s) on this value", args.len());
    // methods every object has
    match (name, args.len()) {
        ("toString", 0) => return Ok(Value::str(v.to_text())),
        ("equals", 1) => return Ok(Value::Bool(v.equals(&args[0]))),
        ("hashCode", 0) => return Ok(Value::Int(0)),
        _ => {}
    }
    match v {
        Value::Str(s) => {
            let s: &str = s;
            Ok(match (name, args.len()) {
                ("length", 0) => Value::Int(s.chars().count() as i64),
                ("isEmpty", 0) => Value::Bool(s.is_empty()),
                ("isBlank", 0) => Value::Bool(s.trim().is_empty()),
                ("trim", 0) => Value::str(s.trim()),
                ("toLowerCase", 0) => Value::str(s.to_lowercase()),
                ("toUpperCase", 0) => Value::str(s.to_uppercase()),
                ("contains", 1) => Value::Bool(s.contains(arg_str(args, 0).as_str())),
                ("startsWith", 1) => Value::Bool(s.starts_with(arg_str(args, 0).as_str())),
                ("endsWith", 1) => Value::Bool(s.ends_with(arg_str(args, 0).as_str())),
                ("equalsIgnoreCase", 1) => Value::Bool(s.to_lowercase() == arg_str(args, 0).to_lowercase()),
                ("concat", 1) => Value::str(format!("{s}{}", arg_str(args, 0))),
                ("indexOf", 1) => {
                    let needle = arg_str(args, 0);
                    Value::Int(s.find(needle.as_str()).map_or(-1, |b| s[..b].chars().count() as i64))
                }
                ("lastIndexOf", 1) => {
                    let needle = arg_str(args, 0);
                    Value::Int(s.rfind(needle.as_str()).map_or(-1, |b| s[..b].chars().count() as i64))
                }
                ("charAt", 1) => {
                    let i = arg_int(args, 0)?;
                    let c = usize::try_from(i).ok().and_then(|i| s.chars().nth(i));
                    Value::str(c.ok_or_else(|| format!("charAt({i}): out of range"))?.to_string())
                }
                ("substring", 1 | 2) => {
                    let from = arg_int(args, 0)?;
                    let to = if args.len() == 2 { arg_int(args, 1)? } else { s.chars().count() as i64 };
                    let (a, b) =
                        char_range(s, from, to).ok_or_else(|| format!("substring({from}, {to}): out of range"))?;
                    Value::str(&s[a..b])
                }
                ("replace", 2) => Value::str(s.replace(arg_str(args, 0).as_str(), &arg_str(args, 1))),
                ("replaceAll", 2) | ("replaceFirst", 2) => {
                    let re = compile_regex(&arg_str(args, 0))?;
                    let rep = java_replacement(&arg_str(args, 1));
                    let out = if name == "replaceAll" {
                        re.replace_all(s, rep.as_str())
                    } else {
                        re.replace(s, rep.as_str())
                    };
                    Value::str(out.into_owned())
                }
                ("matches", 1) => {
                    let re = compile_regex(&format!("^(?:{})$", arg_str(args, 0)))?;
                    Value::Bool(re.is_match(s))
                }
                ("split", 1) => {
                    let re = compile_regex(&arg_str(args, 0))?;
                    let mut parts: Vec<&str> = re.split(s).collect();
                    // Java drops trailing empty strings
                    while parts.len() > 1 && parts.last() == Some(&"") {
                        parts.pop();
                    }
                    Value::list(parts.into_iter().map(Value::str).collect())
                }
                _ => return Err(unknown()),
            })
        }
        Value::List(l) => Ok(match (name, args.len()) {
            ("size", 0) => Value::Int(l.borrow().len() as i64),
            ("isEmpty", 0) => Value::Bool(l.borrow().is_empty()),
            ("get", 1) => {
                let i = arg_int(args, 0)?;
                let l = l.borrow();
                usize::try_from(i)
                    .ok()
                    .and_then(|i| l.get(i).cloned())
                    .ok_or_else(|| format!("get({i}): index out of range for a list of {}", l.len()))?
            }
            ("contains", 1) => Value::Bool(l.borrow().iter().any(|x| x.equals(&args[0]))),
            ("indexOf", 1) => Value::Int(l.borrow().iter().position(|x| x.equals(&args[0])).map_or(-1, |i| i as i64)),
            ("add", 1) => {
                l.borrow_mut().push(args[0].clone());
                Value::Bool(true)
            }
            ("addAll", 1) => {
                let more: Vec<Value> = match &args[0] {
                    Value::List(m) => m.borrow().clone(),
                    _ => return Err(unknown()),
                };
                l.borrow_mut().extend(more);
                Value::Bool(true)
            }
            ("remove", 1) => {
                let i = arg_int(args, 0)?;
                let mut l = l.borrow_mut();
                match usize::try_from(i).ok().filter(|i| *i < l.len()) {
                    Some(i) => l.remove(i),
                    None => return Err(format!("remove({i}): index out of range")),
                }
            }
            ("set", 2) => {
                let i = arg_int(args, 0)?;
                let mut l = l.borrow_mut();
                match usize::try_from(i).ok().filter(|i| *i < l.len()) {
                    Some(i) => std::mem::replace(&mut l[i], args[1].clone()),
                    None => return Err(format!("set({i}): index out of range")),
                }
            }
            _ => return Err(unknown()),
        }),
        Value::Map(m) => Ok(match (name, args.len()) {
            ("size", 0) => Value::Int(m.borrow().len() as i64),
            ("isEmpty", 0) => Value::Bool(m.borrow().is_empty()),
            ("get", 1) => v.get(&args[0].to_text()).unwrap_or_default(),
            ("containsKey", 1) => Value::Bool(v.get(&args[0].to_text()).is_some()),
            ("containsValue", 1) => Value::Bool(m.borrow().iter().any(|(_, x)| x.equals(&args[0]))),
            ("keySet", 0) => Value::list(m.borrow().iter().map(|(k, _)| Value::str(k.as_str())).collect()),
            ("values", 0) => Value::list(m.borrow().iter().map(|(_, x)| x.clone()).collect()),
            ("entrySet", 0) => Value::list(
                m.borrow()
                    .iter()
                    .map(|(k, x)| Value::map(vec![("key".into(), Value::str(k.as_str())), ("value".into(), x.clone())]))
                    .collect(),
            ),
            ("put", 2) => {
                let k = args[0].to_text();
                put(&mut m.borrow_mut(), &k, args[1].clone()).unwrap_or_default()
            }
            ("putAll", 1) => {
                let more: Vec<(String, Value)> = match &args[0] {
                    Value::Map(o) => o.borrow().clone(),
                    _ => return Err(unknown()),
                };
                let mut m = m.borrow_mut();
                for (k, x) in more {
                    put(&mut m, &k, x);
                }
                Value::Null
            }
            ("remove", 1) => {
                let k = args[0].to_text();
                let mut m = m.borrow_mut();
                match m.iter().position(|(x, _)| *x == k) {
                    Some(i) => m.remove(i).1,
                    None => Value::Null,
                }
            }
            _ => return Err(unknown()),
        }),
        Value::Int(_) | Value::Float(_) => Ok(match (name, args.len()) {
            ("intValue", 0) | ("longValue", 0) => Value::Int(v.as_f64().unwrap_or(0.0) as i64),
            ("doubleValue", 0) | ("floatValue", 0) => Value::Float(v.as_f64().unwrap_or(0.0)),
            _ => return Err(unknown()),
        }),
        _ => Err(unknown()),
    }
}
