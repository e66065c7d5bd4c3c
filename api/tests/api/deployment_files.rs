//! The deployment files (Dockerfile, compose.yaml, deploy/herald@.service) and scripts/run.sh
//! stay in step with the settings Herald reads: every variable they set is one Herald reads,
//! and every setting Herald reads is documented in docs/running.md's configuration table.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the api crate sits in the repository")
        .to_path_buf()
}

/// Variable names in `text`: `HERALD_*`, `DATABASE_URL` and `NATS_URL`, except the test,
/// benchmark and fuzz harnesses' own.
fn names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .filter(|t| t.starts_with("HERALD_") || *t == "DATABASE_URL" || *t == "NATS_URL")
        .filter(|t| {
            ![
                "HERALD_TEST_",
                "HERALD_BENCH_",
                "HERALD_FUZZ_",
                "HERALD_SKIP_SERVICES",
            ]
            .iter()
            .any(|p| t.starts_with(p))
        })
        .filter(|t| !t.ends_with('_'))
        .map(String::from)
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// What the `herald` binary reads: string literals of every crate's `src/` (not the
/// benchmark's, not tests).
fn read_by_herald(root: &Path) -> BTreeSet<String> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(root).expect("repository").flatten() {
        let src = entry.path().join("src");
        let name = entry.file_name();
        if src.is_dir() && name != "bench" && name != "target" && name != "web" {
            sources(&src, &mut files);
        }
    }
    let mut found = BTreeSet::new();
    for file in files {
        let text = read(&file);
        // only quoted names: `var("HERALD_X")`, `"HERALD_X"` in a settings list
        for quoted in text.split('"').skip(1).step_by(2) {
            found.extend(names(quoted));
        }
    }
    found
}

/// The first column of docs/running.md's "## Configuration" table.
fn documented(root: &Path) -> BTreeSet<String> {
    let doc = read(&root.join("docs/running.md"));
    let section = doc
        .split("\n## Configuration")
        .nth(1)
        .expect("docs/running.md has a Configuration section");
    let section = section.split("\n## ").next().unwrap_or_default();
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .flat_map(|l| names(l.split('|').nth(1).unwrap_or_default()))
        .collect()
}

#[test]
fn deployment_files_set_only_settings_herald_reads_and_every_setting_is_documented() {
    let root = repo();
    let herald = read_by_herald(&root);
    assert!(
        herald.contains("DATABASE_URL") && herald.contains("HERALD_WORKER_LISTEN"),
        "the scan finds Herald's settings: {herald:?}"
    );
    for file in [
        "compose.yaml",
        "Dockerfile",
        "deploy/herald@.service",
        "scripts/run.sh",
    ] {
        let set = names(&read(&root.join(file)));
        let unknown: Vec<_> = set.difference(&herald).collect();
        assert!(
            unknown.is_empty(),
            "{file} sets what Herald never reads: {unknown:?}"
        );
    }
    let documented = documented(&root);
    let undocumented: Vec<_> = herald.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "settings missing from docs/running.md's Configuration table: {undocumented:?}"
    );
    let stale: Vec<_> = documented.difference(&herald).collect();
    assert!(stale.is_empty(), "documented but never read: {stale:?}");
}
