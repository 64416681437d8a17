//! API Gateway's variables for mapping templates: `$input` (the request or integration
//! payload and the method request's parameters) and `$util`, as AWS documents them.
//! JSONPath is RFC 9535's (`serde_json_path`); a definite path (no wildcard, slice, filter or
//! descent) gives its one value, any other the list of what it matched, as Jayway's JsonPath
//! that API Gateway uses does.

use super::value::Value;
use base64::Engine;
use std::cell::OnceCell;

/// What `$input` reads: the payload and the method request's parameters.
#[derive(Debug, Default)]
pub struct Input {
    pub body: String,
    /// Path parameters, query string and headers, in that order of lookup.
    pub path: Vec<(String, String)>,
    pub querystring: Vec<(String, String)>,
    pub header: Vec<(String, String)>,
    json: OnceCell<Option<serde_json::Value>>,
}

impl Input {
    pub fn new(
        body: impl Into<String>,
        path: Vec<(String, String)>,
        querystring: Vec<(String, String)>,
        header: Vec<(String, String)>,
    ) -> Input {
        Input { body: body.into(), path, querystring, header, json: OnceCell::new() }
    }

    /// The payload as JSON (an empty payload is `{}`, as API Gateway reads it), parsed once.
    fn json(&self) -> Option<&serde_json::Value> {
        self.json
            .get_or_init(|| {
                if self.body.trim().is_empty() {
                    Some(serde_json::Value::Object(Default::default()))
                } else {
                    serde_json::from_str(&self.body).ok()
                }
            })
            .as_ref()
    }

    fn param(&self, name: &str) -> Option<&str> {
        fn find<'a>(l: &'a [(String, String)], name: &str, ci: bool) -> Option<&'a str> {
            l.iter().find(|(k, _)| if ci { k.eq_ignore_ascii_case(name) } else { k == name }).map(|(_, v)| v.as_str())
        }
        find(&self.path, name, false)
            .or_else(|| find(&self.querystring, name, false))
            .or_else(|| find(&self.header, name, true))
    }
}

/// Evaluates a JSONPath over `doc`: the one value of a definite path (null when it matches
/// nothing), or the list of matches of any other.
pub fn json_path(doc: &serde_json::Value, path: &str) -> Result<serde_json::Value, String> {
    let path = path.trim();
    let q = serde_json_path::JsonPath::parse(path).map_err(|e| format!("bad JSONPath {path:?}: {e}"))?;
    let nodes = q.query(doc);
    let definite =
        !(path.contains('*') || path.contains("..") || path.contains("?") || path.contains(':') || path.contains(','));
    if definite {
        Ok(nodes.first().cloned().unwrap_or(serde_json::Value::Null))
    } else {
        Ok(serde_json::Value::Array(nodes.all().into_iter().cloned().collect()))
    }
}

fn one_str(args: &[Value], what: &str) -> Result<String, String> {
    match args {
        [v] => Ok(v.to_text()),
        _ => Err(format!("{what} takes one argument")),
    }
}

fn pairs(l: &[(String, String)]) -> Value {
    Value::map(l.iter().map(|(k, v)| (k.clone(), Value::str(v.as_str()))).collect())
}

/// `$input.body` (the one property `$input` has).
pub(crate) fn input_property(input: Option<&Input>, name: &str) -> Value {
    match (input, name) {
        (Some(input), "body") => Value::str(input.body.as_str()),
        _ => Value::Null,
    }
}

/// `$input.NAME(args)`; an error says why (the caller adds where).
pub(crate) fn input_method(input: Option<&Input>, name: &str, args: &[Value]) -> Result<Value, String> {
    let Some(input) = input else { return Ok(Value::Null) };
    match (name, args.len()) {
        ("body", 0) => Ok(Value::str(input.body.as_str())),
        ("params", 0) => Ok(Value::map(vec![
            ("header".into(), pairs(&input.header)),
            ("path".into(), pairs(&input.path)),
            ("querystring".into(), pairs(&input.querystring)),
        ])),
        ("params", 1) => Ok(Value::str(input.param(&args[0].to_text()).unwrap_or(""))),
        ("json", 1) | ("path", 1) => {
            let path = one_str(args, name)?;
            let Some(doc) = input.json() else {
                return Err(format!("$input.{name}('{path}'): the payload is not JSON"));
            };
            let found = json_path(doc, &path)?;
            if name == "json" {
                Ok(Value::str(found.to_string()))
            } else {
                Ok(Value::from_json(&found))
            }
        }
        _ => Err(format!("$input has no method {name}() with {} argument(s)", args.len())),
    }
}

/// Java's `StringEscapeUtils.escapeJavaScript` (commons-lang 2), which `$util.escapeJavaScript`
/// is: quotes, backslash and `/` escaped, control characters and every non-ASCII character
/// as `\uXXXX` (UTF-16 code units).
pub fn escape_javascript(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{:04X}", u));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Java's `URLEncoder.encode(s, "UTF-8")`: form encoding, space as `+`, `*-._` and
/// alphanumerics kept.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'*' | b'_' => out.push(b as char),
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub fn url_decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus).decode_utf8_lossy().into_owned()
}

/// `$util.NAME(args)`; an error says why (the caller adds where).
pub(crate) fn util_method(name: &str, args: &[Value]) -> Result<Value, String> {
    let what = format!("$util.{name}");
    // null in, null out (Java's helpers return null for null)
    if matches!(args, [Value::Null]) && name != "toJson" {
        return Ok(Value::Null);
    }
    Ok(match name {
        "escapeJavaScript" => Value::str(escape_javascript(&one_str(args, &what)?)),
        "urlEncode" => Value::str(url_encode(&one_str(args, &what)?)),
        "urlDecode" => Value::str(url_decode(&one_str(args, &what)?)),
        "base64Encode" => Value::str(base64::engine::general_purpose::STANDARD.encode(one_str(args, &what)?)),
        "base64Decode" => {
            let s = one_str(args, &what)?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .map_err(|e| format!("$util.base64Decode: {e}"))?;
            Value::str(String::from_utf8_lossy(&bytes).into_owned())
        }
        "parseJson" => {
            let s = one_str(args, &what)?;
            let j: serde_json::Value =
                serde_json::from_str(&s).map_err(|e| format!("$util.parseJson: not JSON ({e})"))?;
            Value::from_json(&j)
        }
        "toJson" => match args {
            [v] => Value::str(v.to_json().to_string()),
            _ => return Err("$util.toJson takes one argument".into()),
        },
        _ => return Err(format!("$util has no method {name}()")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn definite_and_indefinite_paths() {
        let doc = json!({"a": {"b": [1, 2, {"c": "x"}]}, "n": null});
        assert_eq!(json_path(&doc, "$.a.b[2].c").expect("path"), json!("x"));
        assert_eq!(json_path(&doc, "$.missing").expect("path"), json!(null));
        assert_eq!(json_path(&doc, "$.a.b[*]").expect("path"), json!([1, 2, {"c": "x"}]));
        assert_eq!(json_path(&doc, "$..c").expect("path"), json!(["x"]));
        assert_eq!(json_path(&doc, "$['a']['b'][0]").expect("path"), json!(1));
        assert!(json_path(&doc, "$.a[").is_err());
    }

    #[test]
    fn escapes_as_commons_lang() {
        assert_eq!(escape_javascript("a\"b'c\\d/e\n\u{1}é😀"), "a\\\"b\\'c\\\\d\\/e\\n\\u0001\\u00E9\\uD83D\\uDE00");
        assert_eq!(url_encode("a b&c=d/é*~"), "a+b%26c%3Dd%2F%C3%A9*%7E");
        assert_eq!(url_decode("a+b%26c"), "a b&c");
    }
}
