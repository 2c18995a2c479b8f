//! The room map of docs/architecture.md, checked: what each room may import, and files short
//! enough to read at once. Reads the sources; runs nothing else.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Room → the crate modules its files may name (`crate::X`). Rooms not listed are the gRPC shell
/// and the tools, which may import anything.
const RULES: &[(&str, &[&str])] = &[
    ("ebs", &["error"]),
    ("params", &["ebs", "error"]),
    ("os", &["error"]),
    ("topology", &["csi", "error"]),
    ("cloud", &["ebs", "error", "os", "metrics", "deadline", "iam"]),
    (
        "controller",
        &[
            "capability",
            "cloud",
            "csi",
            "ebs",
            "error",
            "inflight",
            "params",
            "rpc",
            "topology",
        ],
    ),
    (
        "node",
        &[
            "capability",
            "cloud",
            "csi",
            "ebs",
            "error",
            "inflight",
            "metrics",
            "os",
            "params",
            "rpc",
            "topology",
        ],
    ),
];

/// Lines a file may have before its `#[cfg(test)]` module.
const MAX_LINES: usize = 600;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The room a file belongs to: its first path component under src/, without `.rs`.
fn room(path: &Path) -> String {
    let rel = path.strip_prefix(src()).expect("under src/");
    let first = rel
        .components()
        .next()
        .expect("a component")
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// The crate modules a file names in code (comments and doc links aside).
fn imports(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `ebs_csi::` in tests is the crate's own name; only `crate::` counts here.
            if !rest[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') && !name.is_empty() {
                found.insert(name);
            }
            rest = after;
        }
    }
    found
}

#[test]
fn rooms_import_only_what_the_map_allows() {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let mut broken = Vec::new();
    for path in &files {
        let room = room(path);
        let Some((_, allowed)) = RULES.iter().find(|(r, _)| *r == room) else {
            continue;
        };
        let text = fs::read_to_string(path).expect("source is UTF-8");
        for name in imports(&text) {
            if name != room && !allowed.contains(&name.as_str()) {
                broken.push(format!("{} (room {room}) imports crate::{name}", path.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "imports the room map forbids:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_checker_sees_a_forbidden_import() {
    let text = "use crate::ebs::VolumeType;\n// crate::controller in a comment\nuse crate::controller::Options;\n";
    let found = imports(text);
    assert!(found.contains("controller") && found.contains("ebs"), "{found:?}");
    assert_eq!(found.len(), 2);
    assert!(imports("use ebs_csi::controller;").is_empty());
}

#[test]
fn no_file_is_longer_than_a_reader_holds() {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|path| {
            let text = fs::read_to_string(path).expect("source is UTF-8");
            let before_tests = text.lines().take_while(|l| l.trim() != "#[cfg(test)]").count();
            (before_tests > MAX_LINES).then(|| format!("{}: {before_tests} lines", path.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines before their tests:\n{}",
        long.join("\n")
    );
}
