//! The module graph of this crate, checked: no module imports one that
//! imports it back (directly or through others), and no source file holds
//! more than [`MAX_CODE_LINES`] lines of code (tests live in their own
//! files, comments and blank lines do not count).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// "About 600 lines" (the issue that split the agent into domains).
const MAX_CODE_LINES: usize = 600;

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("reading src") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`containers/connect.rs` is
/// `containers`), `None` for the crate root and the binary.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs");
    (!matches!(name, "lib" | "main" | "layering")).then(|| name.to_owned())
}

/// The top-level modules a file names with `crate::` (in `use` trees and
/// paths) or `super::` from a top-level file's child.
fn imports(text: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let code: String = text
        .lines()
        .take_while(|l| !l.starts_with("#[cfg(test)]"))
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    // `crate::a::...`, and `crate::{a, b::c, ...}` groups.
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut end = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = i;
                    break;
                }
            }
            let inner = &group[..end];
            let mut depth = 0;
            let mut item = String::new();
            for c in inner.chars().chain([',']) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        let head = item.trim().split("::").next().unwrap_or("").to_owned();
                        if known.contains(&head) {
                            found.insert(head);
                        }
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    item.push(c);
                }
            }
        } else {
            let head: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if known.contains(&head) {
                found.insert(head);
            }
        }
    }
    found
}

fn lines_of_code(text: &str) -> usize {
    text.lines()
        .take_while(|l| !l.starts_with("#[cfg(test)]\nmod tests {"))
        .filter(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with("//")
        })
        .count()
}

#[test]
fn no_module_cycles_and_no_oversized_files() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let known: BTreeSet<String> = files.iter().filter_map(|f| module_of(&src, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut oversized = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).expect("a source file");
        let is_test_file = file.file_name().is_some_and(|n| n == "tests.rs");
        if !is_test_file {
            // Test modules inline at the end of a file are not code lines.
            let code = text
                .split("\n#[cfg(test)]\nmod tests {")
                .next()
                .unwrap_or("");
            let n = lines_of_code(code);
            if n > MAX_CODE_LINES {
                oversized.push(format!("{} ({n})", file.display()));
            }
        }
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        if is_test_file {
            continue;
        }
        let deps = graph.entry(module.clone()).or_default();
        deps.extend(imports(&text, &known).into_iter().filter(|d| *d != module));
    }
    assert!(
        oversized.is_empty(),
        "files over {MAX_CODE_LINES} lines of code: {oversized:?}"
    );

    // A depth-first search for a cycle, reporting the first one found.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for dep in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(dep, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(cycle) = visit(module, &graph, &mut Vec::new(), &mut done) {
            panic!("module import cycle: {}", cycle.join(" -> "));
        }
    }
    // The layering this crate promises (lib.rs): the kernel traits and the
    // wire types know nothing of the agent.
    for low in ["datapath", "host", "api", "model", "state", "spec"] {
        for high in ["agent", "containers", "networks", "publications", "server"] {
            assert!(
                !graph.get(low).is_some_and(|d| d.contains(high)),
                "{low} imports {high}"
            );
        }
    }
}

#[test]
fn the_import_scanner_reads_use_trees() {
    let known: BTreeSet<String> = ["a", "b", "c", "d"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let text = "use crate::{a::X, b::{Y, Z}, c};\nfn f() { crate::d::g(); }\n// crate::zz\n";
    assert_eq!(imports(text, &known), known);
}
