//! Validation, request and response transforms, templates, CORS, header lists.

use super::*;

impl Compiler {
    pub(super) fn validator(&mut self, p: &KeyPath, v: &model::Validate) -> Option<crate::validation::Validator> {
        let body = match &v.body {
            None => None,
            Some(model::SchemaRef::File(f)) => self.data_file(p.key("body"), f),
            Some(model::SchemaRef::Inline(t)) => match serde_json::to_value(t) {
                Ok(v) => Some(v),
                Err(e) => {
                    self.err(p.key("body"), format!("schema: {e}"));
                    None
                }
            },
        };
        let body = body.and_then(|schema| match crate::validation::compile_schema(&schema) {
            Ok(c) => Some(c),
            Err(e) => {
                self.err(p.key("body"), format!("invalid JSON Schema: {e}"));
                None
            }
        });
        let mut headers = vec![];
        for (i, h) in v.headers.iter().enumerate() {
            match http::HeaderName::from_bytes(h.as_bytes()) {
                Ok(n) => headers.push(n),
                Err(_) => self.err(p.key("headers").idx(i), format!("{h:?} is not a header name")),
            }
        }
        Some(crate::validation::Validator {
            query: v.query.clone(),
            headers,
            body,
            body_required: v.body_required,
            content_types: v.content_types.iter().map(|c| c.trim().to_ascii_lowercase()).collect(),
        })
    }

    /// Compiles `template` as `name`; a syntax error is a config error at `p`.
    pub(super) fn template(
        &mut self,
        p: KeyPath,
        env: &mut crate::templates::Templates,
        name: String,
        template: &str,
    ) -> String {
        if let Err(e) = env.add_template_owned(name.clone(), template.to_string()) {
            self.err(p, format!("template error: {e}"));
        }
        name
    }

    pub(super) fn header_templates(
        &mut self,
        p: &KeyPath,
        env: &mut crate::templates::Templates,
        prefix: &str,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> (Vec<(http::HeaderName, String)>, Vec<http::HeaderName>) {
        let mut out = vec![];
        for (k, t) in set {
            match http::HeaderName::from_bytes(k.as_bytes()) {
                Ok(n) => out.push((n, self.template(p.key("set_headers").key(k), env, format!("{prefix}:h:{k}"), t))),
                Err(_) => self.err(p.key("set_headers").key(k), format!("{k:?} is not a header name")),
            }
        }
        let mut rm = vec![];
        for (i, k) in remove.iter().enumerate() {
            match http::HeaderName::from_bytes(k.as_bytes()) {
                Ok(n) => rm.push(n),
                Err(_) => self.err(p.key("remove_headers").idx(i), format!("{k:?} is not a header name")),
            }
        }
        (out, rm)
    }

    pub(super) fn request_transform(
        &mut self,
        p: &KeyPath,
        t: &model::RequestTransform,
        env: &mut crate::templates::Templates,
        tname: &str,
    ) -> crate::transform::RequestTransform {
        let prefix = format!("req:{tname}");
        let (set_headers, remove_headers) = self.header_templates(p, env, &prefix, &t.set_headers, &t.remove_headers);
        let set_query = t
            .set_query
            .iter()
            .map(|(k, v)| (k.clone(), self.template(p.key("set_query").key(k), env, format!("{prefix}:q:{k}"), v)))
            .collect();
        crate::transform::RequestTransform {
            set_headers,
            remove_headers,
            set_query,
            path: t.path.as_ref().map(|b| self.template(p.key("path"), env, format!("{prefix}:path"), b)),
            body: self.body_template(p, env, &prefix, t.body.as_ref()),
        }
    }

    /// A transform's `body`: empty means the body passes through untouched.
    pub(super) fn body_template(
        &mut self,
        p: &KeyPath,
        env: &mut crate::templates::Templates,
        prefix: &str,
        body: Option<&model::TemplateText>,
    ) -> Option<String> {
        body.filter(|b| !b.is_empty()).map(|b| {
            self.text_template(
                p.key("body"),
                env,
                &format!("{prefix}:body"),
                b,
                crate::templates::name_for,
                str::to_string,
            )
        })
    }

    /// A template the config gives (minijinja text, or `{ vtl }` / `{ vtl_file }`), compiled
    /// into `env` under its name ([`model::TemplateText::name`]; `jinja_text` rewrites
    /// minijinja text first); returns the name.
    pub(super) fn text_template(
        &mut self,
        p: KeyPath,
        env: &mut crate::templates::Templates,
        base: &str,
        t: &model::TemplateText,
        jinja_name: fn(&str, &str) -> String,
        jinja_text: fn(&str) -> String,
    ) -> String {
        match t {
            model::TemplateText::Text(text) => {
                let text = jinja_text(text);
                self.template(p, env, jinja_name(base, &text), &text)
            }
            model::TemplateText::Vtl(v) => {
                let name = t.name(base, jinja_name);
                let src = match (&v.vtl, &v.vtl_file) {
                    (Some(src), None) => Some(src.clone()),
                    (None, Some(f)) => {
                        self.file(p.key("vtl_file"), f).map(|(_, b)| String::from_utf8_lossy(&b).into_owned())
                    }
                    _ => {
                        self.err(p.clone(), "a VTL template is { vtl = \"...\" } or { vtl_file = \"FILE\" }");
                        None
                    }
                };
                if let Some(src) = src {
                    match crate::vtl::Template::compile(&src) {
                        Ok(c) => env.add_vtl(name.clone(), c),
                        Err(e) => {
                            let at = if v.vtl_file.is_some() { p.key("vtl_file") } else { p.key("vtl") };
                            self.err(at, format!("VTL {e}"));
                        }
                    }
                }
                name
            }
        }
    }

    pub(super) fn response_transform(
        &mut self,
        p: &KeyPath,
        t: &model::ResponseTransform,
        env: &mut crate::templates::Templates,
        tname: &str,
    ) -> crate::transform::ResponseTransform {
        let prefix = format!("resp:{tname}");
        let (set_headers, remove_headers) = self.header_templates(p, env, &prefix, &t.set_headers, &t.remove_headers);
        let mut status = vec![];
        for (from, to) in &t.status {
            let sp = p.key("status").key(from);
            let from = from.parse::<u16>().ok().and_then(|c| http::StatusCode::from_u16(c).ok());
            let to = http::StatusCode::from_u16(*to).ok().filter(|c| c.as_u16() >= 200);
            match (from, to) {
                (Some(f), Some(t)) => status.push((f, t)),
                _ => self.err(sp, "status remapping must map a status code to one of 200 to 599, as { \"201\" = 200 }"),
            }
        }
        crate::transform::ResponseTransform {
            status,
            set_headers,
            remove_headers,
            body: self.body_template(p, env, &prefix, t.body.as_ref()),
        }
    }

    pub(super) fn cors(&mut self, p: &KeyPath, c: &model::Cors) -> crate::cors::Cors {
        let value = |this: &mut Self, k: &str, list: &[String]| -> Option<http::HeaderValue> {
            if list.is_empty() {
                return None;
            }
            http::HeaderValue::from_str(&list.join(", "))
                .map_err(|_| this.err(p.key(k), "values must be plain header text"))
                .ok()
        };
        for (i, o) in c.allow_origins.iter().enumerate() {
            if o != "*" && !(o.starts_with("http://") || o.starts_with("https://")) {
                self.err(
                    p.key("allow_origins").idx(i),
                    format!("{o:?} must be \"*\" or an origin such as \"https://app.example.com\""),
                );
            }
        }
        if c.allow_credentials && c.allow_origins.iter().any(|o| o == "*") {
            // a wildcard with credentials would let every site read answers with the user's cookies
            self.err(p.key("allow_credentials"), "allow_credentials = true needs explicit allow_origins, not \"*\"");
        }
        let methods = if c.allow_methods.is_empty() {
            vec!["GET".into(), "HEAD".into(), "POST".into()]
        } else {
            c.allow_methods.clone()
        };
        crate::cors::Cors {
            origins: c.allow_origins.iter().map(|o| o.trim_end_matches('/').to_string()).collect(),
            any_origin: c.allow_origins.iter().any(|o| o == "*"),
            methods: value(self, "allow_methods", &methods).unwrap_or(http::HeaderValue::from_static("GET")),
            headers: value(self, "allow_headers", &c.allow_headers),
            expose: value(self, "expose_headers", &c.expose_headers),
            max_age: c.max_age.map(|d| http::HeaderValue::from(d.0.as_secs())),
            credentials: c.allow_credentials,
        }
    }

    pub(super) fn headers(
        &mut self,
        p: &KeyPath,
        h: &BTreeMap<String, String>,
    ) -> Vec<(http::HeaderName, http::HeaderValue)> {
        let mut out = vec![];
        for (k, v) in h {
            match (http::HeaderName::from_bytes(k.as_bytes()), http::HeaderValue::from_str(v)) {
                (Ok(n), Ok(v)) => out.push((n, v)),
                _ => self.err(p.key(k), format!("invalid header {k:?}: {v:?}")),
            }
        }
        out
    }
}
