//! IAM-like policy documents, shared by the Lambda-style authorizers (the policy they answer)
//! and the SigV4 authorizers (the policies of `credentials.toml`): statements with `Effect`,
//! `Action` and `Resource`, `*`/`?` wildcards, and an explicit Deny that wins over any Allow.

use serde_json::Value;

/// The action every statement is matched against.
const INVOKE: &str = "execute-api:Invoke";

#[derive(Debug, Clone, PartialEq, Eq)]
struct Statement {
    allow: bool,
    actions: Vec<String>,
    resources: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    statements: Vec<Statement>,
}

fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    match v? {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(a) => a.iter().map(|x| x.as_str().map(str::to_string)).collect(),
        _ => None,
    }
}

impl Policy {
    /// Parses a policy document (`{"Statement": [...]}` or a single statement object); a
    /// statement without a valid Effect, Action or Resource makes the whole document invalid.
    pub fn parse(doc: &Value) -> Option<Policy> {
        let list = match doc.get("Statement")? {
            Value::Array(a) => a.iter().collect::<Vec<_>>(),
            o @ Value::Object(_) => vec![o],
            _ => return None,
        };
        let statements = list
            .into_iter()
            .map(|s| {
                let allow = match s.get("Effect")?.as_str()? {
                    "Allow" => true,
                    "Deny" => false,
                    _ => return None,
                };
                Some(Statement { allow, actions: strings(s.get("Action"))?, resources: strings(s.get("Resource"))? })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Policy { statements })
    }

    /// Adds another document's statements (a principal with several policies).
    pub fn extend(&mut self, other: Policy) {
        self.statements.extend(other.statements);
    }

    /// Whether `execute-api:Invoke` on `arn` is allowed: some Allow matches and no Deny does.
    pub fn allows(&self, arn: &str) -> bool {
        self.allows_action(INVOKE, arn)
    }

    /// Whether `action` (`execute-api:ManageConnections`, ...) on `arn` is allowed.
    pub fn allows_action(&self, action: &str, arn: &str) -> bool {
        let hit = |allow: bool| {
            self.statements.iter().any(|s| {
                s.allow == allow
                    && s.actions.iter().any(|a| wildcard(a, action))
                    && s.resources.iter().any(|r| wildcard(r, arn))
            })
        };
        !hit(false) && hit(true)
    }
}

/// IAM-style matching: `*` any run of characters, `?` one character.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wildcards_match_like_iam() {
        assert!(wildcard("arn:edgegate:execute-api:pets/prod/GET/*", "arn:edgegate:execute-api:pets/prod/GET/pets/7"));
        assert!(wildcard("*", "anything"));
        assert!(wildcard("a?c", "abc"));
        assert!(!wildcard("arn:edgegate:execute-api:pets/prod/GET/*", "arn:edgegate:execute-api:pets/prod/POST/pets"));
        assert!(wildcard("arn:*:execute-api:*/*/*/pets/*", "arn:edgegate:execute-api:p/s/GET/pets/1"));
        assert!(!wildcard("a*b", "acbd"));
    }

    #[test]
    fn explicit_deny_wins_and_other_actions_do_not_count() {
        let p = Policy::parse(&json!({"Version": "2012-10-17", "Statement": [
            {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "arn:edgegate:execute-api:a/prod/*"},
            {"Action": ["execute-api:*"], "Effect": "Deny", "Resource": ["arn:edgegate:execute-api:a/prod/DELETE/*"]},
            {"Action": "s3:GetObject", "Effect": "Allow", "Resource": "*"},
        ]}))
        .expect("policy");
        assert!(p.allows("arn:edgegate:execute-api:a/prod/GET/x"));
        assert!(!p.allows("arn:edgegate:execute-api:a/prod/DELETE/x"));
        assert!(!p.allows("arn:edgegate:execute-api:a/dev/GET/x"), "nothing allows it");
        assert!(Policy::parse(&json!({"Statement": [{"Effect": "Allow", "Action": "*"}]})).is_none(), "no Resource");
        assert!(Policy::parse(&json!({"Statement": [{"Effect": "Maybe", "Action": "*", "Resource": "*"}]})).is_none());
    }
}
