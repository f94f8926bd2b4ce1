//! The source layout's rules (the map in `extentmeta::design`): no module imports
//! a layer above it, the emulator never imports the store, no two files import
//! each other, no source file is over 600 lines outside its test module, and every
//! module's first line is a doc comment saying what it is.
//!
//! Imports are read from the text: `use` items and `crate::`/`super::` paths
//! outside comments and outside the file's test module, each resolved to the
//! file of the longest module path it names (a name the crate root re-exports
//! resolves to the module it comes from).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The longest a source file may be, its test module not counted.
const MAX_LINES: usize = 600;

/// The layer of each top-level module: a module may import its own layer and
/// those below. `design` and the crate root sit above everything.
fn layer(top: &str) -> Option<u8> {
    Some(match top {
        "sync" | "bytes" => 0,
        "fs" | "error" | "record" | "policy" => 1,
        "events" | "backend" => 2,
        "table" | "cache" | "space" => 3,
        "journal" => 4,
        "protocol" => 5,
        "store" | "sim" => 6,
        "design" | "lib" => 7,
        _ => return None,
    })
}

struct Source {
    /// The module path: `["store", "durable"]` for `src/store/durable.rs`.
    module: Vec<String>,
    /// The text without its test module and without comments.
    code: String,
    /// The whole text.
    text: String,
}

fn sources() -> BTreeMap<String, Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&root, &mut files);
    files
        .into_iter()
        .map(|path| {
            let rel = path
                .strip_prefix(&root)
                .expect("under src")
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&path).expect("read source");
            let mut module: Vec<String> = rel
                .trim_end_matches(".rs")
                .split('/')
                .map(str::to_owned)
                .collect();
            if module.last().is_some_and(|m| m == "mod" || m == "lib") {
                module.pop();
            }
            let code = strip_comments(without_tests(&text));
            (rel, Source { module, code, text })
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("list src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text before the file's `mod tests` item (with its `#[cfg(..test..)]`).
fn without_tests(text: &str) -> &str {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(") && trimmed.contains("test") {
            let rest = &text[offset + line.len()..];
            if rest.trim_start().starts_with("mod tests") {
                return &text[..offset];
            }
        }
        offset += line.len();
    }
    text
}

fn strip_comments(code: &str) -> String {
    code.lines()
        .map(|line| match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path the code names that starts with `crate`, `super` or `self`, as
/// segments, with `use` groups (`a::{b, c::d}`) expanded one level.
fn paths(code: &str) -> Vec<Vec<String>> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let starts = ["crate::", "super::", "self::"]
            .iter()
            .any(|p| code_at(&bytes, i, p));
        if !starts || (i > 0 && (ident(bytes[i - 1]) || bytes[i - 1] == ':')) {
            i += 1;
            continue;
        }
        let mut segments = Vec::new();
        let mut current = String::new();
        let mut j = i;
        while j < bytes.len() {
            let c = bytes[j];
            if ident(c) {
                current.push(c);
                j += 1;
            } else if code_at(&bytes, j, "::") {
                segments.push(std::mem::take(&mut current));
                j += 2;
                if j < bytes.len() && bytes[j] == '{' {
                    let end = (j..bytes.len()).find(|&k| bytes[k] == '}').unwrap_or(j);
                    let group: String = bytes[j + 1..end].iter().collect();
                    for item in group.split(',') {
                        let first = item.trim().split("::").next().unwrap_or("").trim();
                        if !first.is_empty() && first != "self" {
                            let mut path = segments.clone();
                            path.push(first.to_owned());
                            out.push(path);
                        }
                    }
                    j = end;
                    break;
                }
            } else {
                break;
            }
        }
        if !current.is_empty() {
            segments.push(current);
        }
        out.push(segments);
        i = j.max(i + 1);
    }
    out
}

fn code_at(chars: &[char], i: usize, pattern: &str) -> bool {
    pattern
        .chars()
        .enumerate()
        .all(|(k, p)| chars.get(i + k) == Some(&p))
}

/// Names the crate root re-exports, with the module each comes from.
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for statement in lib.split(';') {
        let Some(rest) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, names)) = rest.split_once("::") else {
            continue;
        };
        for name in names.trim_matches(|c| c == '{' || c == '}').split(',') {
            let name = name.trim();
            if !name.is_empty() {
                out.insert(name.to_owned(), module.trim().to_owned());
            }
        }
    }
    out
}

/// The file that `path`, named in `from`, refers to: the longest module prefix.
fn resolve(
    path: &[String],
    from: &[String],
    modules: &BTreeMap<Vec<String>, String>,
    roots: &BTreeMap<String, String>,
) -> Option<String> {
    let (mut base, mut rest): (Vec<String>, &[String]) = match path.first()?.as_str() {
        "crate" => (Vec::new(), &path[1..]),
        "self" => (from.to_vec(), &path[1..]),
        "super" => (from.to_vec(), path),
        _ => return None,
    };
    while rest.first().is_some_and(|s| s == "super") {
        base.pop();
        rest = &rest[1..];
    }
    let mut rest = rest.to_vec();
    if base.is_empty()
        && let Some(module) = rest.first().and_then(|name| roots.get(name))
    {
        rest.insert(0, module.clone());
    }
    (0..=rest.len())
        .rev()
        .map(|n| [base.as_slice(), &rest[..n]].concat())
        .find_map(|candidate| modules.get(&candidate).cloned())
}

fn imports() -> (BTreeMap<String, Source>, BTreeMap<String, BTreeSet<String>>) {
    let sources = sources();
    let modules: BTreeMap<Vec<String>, String> = sources
        .iter()
        .map(|(rel, s)| (s.module.clone(), rel.clone()))
        .collect();
    let roots = reexports(&sources["lib.rs"].code);
    let edges = sources
        .iter()
        .map(|(rel, s)| {
            let targets = paths(&s.code)
                .iter()
                .filter_map(|p| resolve(p, &s.module, &modules, &roots))
                .filter(|t| t != rel && t != "lib.rs")
                .collect();
            (rel.clone(), targets)
        })
        .collect();
    (sources, edges)
}

fn top(rel: &str) -> &str {
    rel.split('/').next().unwrap_or(rel).trim_end_matches(".rs")
}

#[test]
fn no_module_imports_a_layer_above_it() {
    let (_, edges) = imports();
    let mut upward = Vec::new();
    for (from, targets) in &edges {
        let Some(own) = layer(top(from)) else {
            panic!("{from}: a top-level module without a layer: add it to the map");
        };
        for to in targets {
            let theirs = layer(top(to)).expect("every target is a source file");
            let sideways = (top(from), top(to)) == ("sim", "store")
                || (top(from), top(to)) == ("store", "sim");
            if theirs > own || sideways {
                upward.push(format!("{from} -> {to}"));
            }
        }
    }
    assert!(upward.is_empty(), "imports against the layers: {upward:#?}");
}

#[test]
fn no_two_files_import_each_other() {
    let (_, edges) = imports();
    let mut cycles = Vec::new();
    for (a, targets) in &edges {
        for b in targets {
            if a < b && edges.get(b).is_some_and(|t| t.contains(a)) {
                cycles.push(format!("{a} <-> {b}"));
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "files that import each other: {cycles:#?}"
    );
}

#[test]
fn no_source_file_is_over_the_limit() {
    let long: Vec<String> = sources()
        .iter()
        .map(|(rel, s)| (rel, without_tests(&s.text).lines().count()))
        .filter(|&(_, lines)| lines > MAX_LINES)
        .map(|(rel, lines)| format!("{rel}: {lines} lines"))
        .collect();
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:#?}");
}

#[test]
fn every_module_says_what_it_is_first() {
    let silent: Vec<String> = sources()
        .iter()
        .filter(|(_, s)| !s.text.trim_start().starts_with("//! "))
        .map(|(rel, _)| rel.clone())
        .collect();
    assert!(silent.is_empty(), "no module doc line first: {silent:#?}");
}

/// The checks above read real imports: a known upward import, a cycle and a
/// re-exported name resolve as they must (so a broken parser cannot pass).
#[test]
fn the_import_reader_resolves_what_it_reads() {
    let (sources, edges) = imports();
    assert!(sources.len() > 50, "read the whole tree");
    // `protocol` imports the table through the crate root's re-export or its path.
    assert!(
        edges
            .iter()
            .any(|(from, to)| top(from) == "protocol" && to.iter().any(|t| top(t) == "table")),
        "protocol's imports of table were read"
    );
    let code = "use crate::{Store, journal::Entry};\nuse super::super::x::Y;";
    let found = paths(code);
    assert!(found.contains(&vec!["crate".to_owned(), "Store".to_owned()]));
    assert!(found.contains(&vec!["crate".to_owned(), "journal".to_owned()]));
    assert_eq!(
        without_tests("a\n#[cfg(test)]\nmod tests {\n}\n"),
        "a\n",
        "the test module is cut"
    );
}
