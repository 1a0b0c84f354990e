//! The module layering that `docs/architecture.md` declares ("Modules, by layer") holds in the
//! code: every module it names exists, and every `crate::…` import of a module's code (tests
//! excluded) names a module on a lower layer. `cargo test --test main layers` is the check.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Module → layer, from the doc's diagram.
fn declared() -> BTreeMap<String, u32> {
    let doc = std::fs::read_to_string(root().join("docs/architecture.md")).unwrap();
    let mut layers = BTreeMap::new();
    for line in doc.lines() {
        let Some(rest) = line.strip_prefix("layer ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let n: u32 = words.next().unwrap().parse().unwrap();
        for m in words {
            assert!(layers.insert(m.to_string(), n).is_none(), "{m} twice");
        }
    }
    assert!(
        layers.len() > 10,
        "no layer diagram in docs/architecture.md"
    );
    layers
}

/// The `.rs` files of module `m` (`index/store` is a folder; `cli` lives beside `main.rs`).
fn files_of(m: &str) -> Vec<PathBuf> {
    let src = root().join("src");
    let file = src.join(format!("{m}.rs"));
    let mut out = Vec::new();
    if file.is_file() {
        out.push(file);
    }
    collect(&src.join(m), &mut out);
    out
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without its inline test module (a `tests` file or folder is all test
/// code: nothing).
fn code(path: &Path) -> String {
    let rel = path.strip_prefix(root().join("src")).unwrap_or(path);
    if rel.components().any(|c| c.as_os_str() == "tests")
        || rel.file_stem().is_some_and(|s| s == "tests")
    {
        return String::new();
    }
    let text = std::fs::read_to_string(path).unwrap();
    match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// The modules `text` imports: `crate::a::b…` paths and `crate::{a, b}` groups (and, for the
/// binary's `cli`, `pgroar::…`), as the longest declared module name they start with.
fn imports(text: &str, layers: &BTreeMap<String, u32>) -> Vec<String> {
    let mut paths = Vec::new();
    for prefix in ["crate::", "pgroar::"] {
        for (i, _) in text.match_indices(prefix) {
            let rest = &text[i + prefix.len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                paths.extend(group[..end].split(',').map(|p| p.trim().replace("::", "/")));
            } else {
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .unwrap_or(rest.len());
                paths.push(rest[..end].replace("::", "/"));
            }
        }
    }
    paths
        .into_iter()
        .filter_map(|p| {
            layers
                .keys()
                .filter(|m| p == **m || p.starts_with(&format!("{m}/")))
                .max_by_key(|m| m.len())
                .cloned()
        })
        .collect()
}

#[test]
fn every_module_imports_only_lower_layers() {
    let layers = declared();
    let mut wrong = Vec::new();
    for (m, &layer) in &layers {
        let files = files_of(m);
        assert!(
            !files.is_empty(),
            "docs/architecture.md names {m}, which src/ lacks"
        );
        // A folder module's files belong to the deepest declared module holding them.
        for f in files {
            let rel = f
                .strip_prefix(root().join("src"))
                .unwrap()
                .to_string_lossy()
                .to_string();
            let owner = layers
                .keys()
                .filter(|k| rel == format!("{k}.rs") || rel.starts_with(&format!("{k}/")))
                .max_by_key(|k| k.len())
                .unwrap();
            if owner != m {
                continue;
            }
            for to in imports(&code(&f), &layers) {
                let ok = to == *m
                    || m.starts_with(&format!("{to}/"))
                    || to.starts_with(&format!("{m}/"))
                    || layers[&to] < layer;
                if !ok {
                    wrong.push(format!(
                        "{rel} ({m}, layer {layer}) imports {to} (layer {})",
                        layers[&to]
                    ));
                }
            }
        }
    }
    // Every top-level module of the crate is placed.
    for e in std::fs::read_dir(root().join("src")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().replace(".rs", "");
        if name != "main" && name != "lib" {
            assert!(
                layers.contains_key(&name),
                "src/{name} is on no layer of docs/architecture.md"
            );
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n{}",
        wrong.join("\n")
    );
}
