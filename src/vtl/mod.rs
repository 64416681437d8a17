//! Velocity Template Language as API Gateway runs it in mapping templates.
//!
//! A template compiles once ([`Template::compile`], errors at line and column) and renders
//! per request ([`Template::render`]) against `$input`, `$context`, `$stageVariables` and
//! `$util`. The language: `#set`, `#if`/`#elseif`/`#else`, `#foreach` (with `$foreach.hasNext`,
//! `index`, `count`, `first`, `last`), `#break`, `#stop`, `##` and `#* *#` comments, `#[[ ]]#`
//! unparsed text, `$ref`, `$!quiet`, `${braced}` references with properties, method calls and
//! `[index]`, string/number/boolean/list/map/range literals and Velocity's operators.
//! Semantics follow AWS where AWS documents them and Apache Velocity (as velocityjs has it)
//! elsewhere; values and method calls follow Java (integer division, `indexOf` -1,
//! `{a=1}` for a map). As API Gateway does, a reference to nothing renders as nothing (Velocity
//! would write its text).
//!
//! Rendering is bounded ([`Limits`]): steps, loop items, output size and the bytes a render
//! may make. A template can fail, never hang or exhaust memory.

mod aws;
mod eval;
mod methods;
mod parse;
mod value;

pub use aws::{escape_javascript, json_path, url_decode, url_encode, Input};
pub use value::Value;

use std::collections::HashMap;

/// What a render may do.
#[derive(Debug, Clone)]
pub struct Limits {
    /// References, method calls, operators and loop iterations, together.
    pub max_steps: usize,
    /// Items one `#foreach` or range may have (API Gateway allows 1,000).
    pub max_iterations: usize,
    pub max_output: usize,
    /// Bytes of strings and collections a render may make.
    pub max_memory: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_steps: 200_000, max_iterations: 1_000, max_output: 10 * 1024 * 1024, max_memory: 32 * 1024 * 1024 }
    }
}

/// A template that does not compile: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{col}: {message}")]
pub struct CompileError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// A render that failed, at the template's line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct RenderError {
    pub line: usize,
    pub message: String,
}

/// A compiled template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<parse::Node>,
    /// Byte offsets where lines start.
    lines: Vec<usize>,
}

/// The variables of one render.
#[derive(Default)]
pub struct Vars<'a> {
    pub input: Option<&'a Input>,
    /// `$context`: a map.
    pub context: Value,
    /// `$stageVariables`: a map.
    pub stage_variables: Value,
}

impl Template {
    pub fn compile(src: &str) -> Result<Template, CompileError> {
        let lines: Vec<usize> = std::iter::once(0).chain(src.match_indices('\n').map(|(i, _)| i + 1)).collect();
        match parse::parse(src) {
            Ok(nodes) => Ok(Template { nodes, lines }),
            Err(e) => {
                let line = lines.partition_point(|&s| s <= e.at).max(1);
                let start = lines[line - 1];
                let col = src.get(start..e.at.min(src.len())).map_or(1, |s| s.chars().count() + 1);
                Err(CompileError { line, col, message: e.message })
            }
        }
    }

    pub fn render(&self, vars: &Vars<'_>, limits: &Limits) -> Result<String, RenderError> {
        let mut globals = HashMap::new();
        globals.insert("context".to_string(), vars.context.clone());
        globals.insert("stageVariables".to_string(), vars.stage_variables.clone());
        let mut r = eval::Renderer {
            vars: globals,
            input: vars.input,
            limits,
            lines: &self.lines,
            steps: 0,
            budget: limits.max_memory,
            out: String::new(),
        };
        match r.nodes(&self.nodes) {
            Ok(()) | Err(eval::Flow::Stop) | Err(eval::Flow::Break) => Ok(r.out),
            Err(eval::Flow::Fail(e)) => Err(e),
        }
    }
}

/// A map value from string pairs (`$context`, `$stageVariables`).
pub fn string_map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
    Value::map(pairs.into_iter().map(|(k, v)| (k.to_string(), Value::str(v))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str) -> String {
        Template::compile(src).expect("compiles").render(&Vars::default(), &Limits::default()).expect("renders")
    }

    #[test]
    fn the_language() {
        assert_eq!(render("a\n#set($x = 1)\nb$x\n"), "a\nb1\n");
        assert_eq!(render("#if(true)\nyes\n#else\nno\n#end\nafter"), "yes\nafter");
        assert_eq!(render("[$undefined] [$!undefined] [${undefined}] [$x.y]"), "[] [] [] []");
        assert_eq!(render("#set($m = {'a': 1, 'b': [1,2]})$m $m.b $m.a"), "{a=1, b=[1, 2]} [1, 2] 1");
        assert_eq!(render("#foreach($i in [1..3])$i#if($foreach.hasNext),#end#end"), "1,2,3");
        assert_eq!(render("#set($s = 'Hello')$s.length() $s.substring(1,3) $s.toUpperCase()"), "5 el HELLO");
        assert_eq!(render("## comment\nx #* block *# y"), "x  y");
        assert_eq!(render("#set($a = 7 / 2)$a #set($b = 7.0 / 2)$b"), "3 3.5");
        assert_eq!(render("#foreach($i in [1..5])#if($i == 3)#break#end$i#end"), "12");
        assert_eq!(render("a#stop b"), "a");
        assert_eq!(render("#set($n = \"x$foo\")$n #set($q = 'x$foo')$q"), "x x$foo");
        assert_eq!(render("#set($l = [])$l.add(1)$l.add('b') $l $l.size()"), "truetrue [1, b] 2");
        assert_eq!(render("#if(1 < 2 && !false || $nope)ok#end"), "ok");
        assert_eq!(render("#{if}(true)a#{else}b#{end}"), "a");
        assert_eq!(render("#[[#if($x) raw]]#"), "#if($x) raw");
    }

    #[test]
    fn aws_variables() {
        let input = Input::new(
            r#"{"customer": "Ann \"A\"", "lines": [{"sku": "a1"}, {"sku": "b2"}], "n": 2.5}"#,
            vec![("id".into(), "7".into())],
            vec![("q".into(), "x y".into())],
            vec![("X-Trace".into(), "t1".into())],
        );
        let vars = Vars {
            input: Some(&input),
            context: string_map([("requestId", "r-1"), ("stage", "prod")]),
            stage_variables: string_map([("table", "orders")]),
        };
        let t = Template::compile(
            "#set($body = $input.path('$'))\n{\"table\": \"$stageVariables.table\", \"id\": \"$context.requestId\",\n \"who\": \"$util.escapeJavaScript($body.customer)\", \"skus\": [#foreach($l in $body.lines)\"$l.sku\"#if($foreach.hasNext),#end#end],\n \"p\": \"$input.params('id')/$input.params('q')/$input.params('x-trace')/$input.params('none')\", \"n\": $input.json('$.n'), \"lines\": $input.json('$.lines[*].sku')}",
        )
        .expect("compiles");
        let out = t.render(&vars, &Limits::default()).expect("renders");
        let j: serde_json::Value = serde_json::from_str(&out).expect(&out);
        assert_eq!(
            j,
            serde_json::json!({"table": "orders", "id": "r-1", "who": "Ann \"A\"", "skus": ["a1", "b2"],
                "p": "7/x y/t1/", "n": 2.5, "lines": ["a1", "b2"]})
        );
    }

    #[test]
    fn compile_errors_have_line_and_column() {
        let e = Template::compile("{\n  \"a\": 1,\n  #if($x\n}").expect_err("unclosed");
        assert_eq!((e.line, e.col), (4, 1), "{e}");
        let e = Template::compile("ok\n  #foreach($x $l)#end").expect_err("no in");
        assert_eq!(e.line, 2);
        assert!(e.to_string().starts_with("2:"), "{e}");
    }

    #[test]
    fn renders_are_bounded() {
        let limits = Limits { max_steps: 10_000, max_iterations: 100, max_output: 4096, max_memory: 64 * 1024 };
        let run = |src: &str| Template::compile(src).expect("compiles").render(&Vars::default(), &limits);
        // a loop over the list it grows runs over what the list held when it began
        assert_eq!(run("#set($l = [1])#foreach($i in $l)$l.add($i)#end$l.size()").expect("ends"), "true2");
        assert!(run("#foreach($i in [1..1000000000])x#end").is_err());
        // doubling a string
        let e = run("#set($s = 'xx')#foreach($i in [1..60])#set($s = \"$s$s\")#end").expect_err("memory");
        assert_eq!(e.line, 1);
        assert!(
            run("#foreach($i in [1..100])0123456789012345678901234567890123456789012345678901234567890#end").is_err()
        );
        // nested loops multiply
        let nested = "#foreach($a in [1..100])#foreach($b in [1..100])#foreach($c in [1..100])x#end#end#end";
        assert!(run(nested).is_err());
        let e = run("ok\n\n$nope.substring(1)\n#set($s = 'abc')$s.substring(5)").expect_err("range");
        assert_eq!(e.line, 4, "{e}");
    }
}
