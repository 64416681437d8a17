//! The architecture guide's anchors point at what they name: each link
//! `[FILE:LINE](../FILE#LLINE "KIND NAME")` in `docs/architecture.md` must land on the line
//! where `KIND NAME` (a fn, struct, enum or trait) is defined.

#[test]
fn architecture_anchors_point_at_what_they_name() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/architecture.md")).expect("docs/architecture.md");
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (i, _) in doc.match_indices("](../") {
        let rest = &doc[i + 5..];
        let Some(end) = rest.find(')') else { continue };
        let link = &rest[..end];
        let Some((target, title)) = link.split_once(" \"") else { continue };
        let title = title.trim_end_matches('"');
        let Some((file, line)) = target.split_once("#L") else { continue };
        let line: usize = line.parse().expect("line number");
        let text = std::fs::read_to_string(root.join(file)).unwrap_or_default();
        let at = text.lines().nth(line - 1).unwrap_or("");
        let (kind, name) = title.split_once(' ').expect("KIND NAME");
        let defines = [
            format!("{kind} {name}("),
            format!("{kind} {name} "),
            format!("{kind} {name}<"),
            format!("{kind} {name}:"),
        ]
        .iter()
        .any(|d| at.contains(d.as_str()));
        if !defines {
            wrong.push(format!("{file}:{line} should define {title}, has {at:?}"));
        }
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} anchors found");
    assert!(wrong.is_empty(), "stale anchors (update docs/architecture.md):\n{}", wrong.join("\n"));
}
