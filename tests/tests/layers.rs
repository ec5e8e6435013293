//! The house keeps one direction: a module of `trail-node` imports only from
//! its own floor or below, and no two modules (nor two files of one module)
//! import each other. This test reads every `crate::…` and `super::…` path
//! in `node/src/**/*.rs` (use lines and paths in code alike), maps each to
//! its module's floor, and fails naming the file, the line and the rule.
//!
//! The floors are the table in `node/src/lib.rs` and `ARCHITECTURE.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → floor. A new module must be given one here.
const FLOORS: &[(&str, u8)] = &[
    ("secret", 0),
    ("clock", 0),
    ("fence", 0),
    ("net", 0),
    ("metrics", 0),
    ("aws", 1),
    ("event", 1),
    ("sls", 1),
    ("record", 1),
    ("tags", 2),
    ("sink", 2),
    ("pipeline", 3),
    ("cluster", 4),
    ("control", 5),
    ("config", 6),
    ("node", 6),
    ("setup", 6),
    ("fuzz", 6),
];

/// One reference from a file to a module path of the crate.
#[derive(Debug, Clone)]
struct Edge {
    file: String,
    line: usize,
    /// The referring file's module path (`["sink", "hec", "service"]`).
    from: Vec<String>,
    /// The referenced path, resolved from the crate root.
    to: Vec<String>,
}

/// The module path of a source file under `src/`; `None` for the crate
/// root and the binary (`main.rs`, `demo.rs` use `trail_node::`, not `crate::`).
fn module_of(rel: &Path) -> Option<Vec<String>> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop()?;
    if parts.is_empty() && matches!(last.as_str(), "lib.rs" | "main.rs" | "demo.rs") {
        return None;
    }
    let stem = last.strip_suffix(".rs")?;
    if stem != "mod" {
        parts.push(stem.to_owned());
    }
    Some(parts)
}

/// The text with comments and string/char literals blanked (newlines kept,
/// so line numbers stay right).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, c: u8| out.push(if c == b'\n' { b'\n' } else { b' ' });
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    out.push(b' ');
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        out.extend_from_slice(b"  ");
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        out.extend_from_slice(b"  ");
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        blank(&mut out, b[i]);
                        i += 1;
                    }
                }
            }
            b'r' if matches!(b.get(i + 1), Some(b'"') | Some(b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                // Raw string: r"…", r#"…"#.
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    out.push(b[i]);
                    i += 1;
                    continue;
                }
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                let end = b[j + 1..]
                    .windows(close.len())
                    .position(|w| w == close.as_slice())
                    .map(|p| j + 1 + p + close.len())
                    .unwrap_or(b.len());
                for &c in &b[i..end] {
                    blank(&mut out, c);
                }
                i = end;
            }
            b'"' => {
                out.push(b' ');
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        blank(&mut out, b[i]);
                        i += 1;
                    }
                    blank(&mut out, b[i]);
                    i += 1;
                }
                out.push(b' ');
                i += 1;
            }
            b'\'' => {
                // A char literal ('a', '\n', '\''), not a lifetime ('a).
                let lit = match (b.get(i + 1), b.get(i + 2), b.get(i + 3)) {
                    (Some(b'\\'), _, _) => b[i + 2..]
                        .iter()
                        .position(|c| *c == b'\'')
                        .map(|p| i + 2 + p + 1)
                        .filter(|_| b.get(i + 2) != Some(&b'\'') || b.get(i + 3) == Some(&b'\'')),
                    (Some(_), Some(b'\''), _) => Some(i + 3),
                    _ => None,
                };
                match lit {
                    Some(end) => {
                        for &c in &b[i..end.min(b.len())] {
                            blank(&mut out, c);
                        }
                        i = end;
                    }
                    None => {
                        out.push(b[i]);
                        i += 1;
                    }
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A tiny tokenizer: identifiers, `::`, and single punctuation.
fn tokens(code: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut line = 1;
    let b = code.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            line += 1;
            i += 1;
        } else if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let s = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push((code[s..i].to_owned(), line));
        } else if c == b':' && b.get(i + 1) == Some(&b':') {
            out.push(("::".into(), line));
            i += 2;
        } else {
            out.push(((c as char).to_string(), line));
            i += 1;
        }
    }
    out
}

/// Parses a use tree at `toks[i]` (after `crate::`), pushing each leaf path.
fn use_tree(
    toks: &[(String, usize)],
    i: &mut usize,
    prefix: &[String],
    out: &mut Vec<Vec<String>>,
) {
    let Some((t, _)) = toks.get(*i) else { return };
    if t == "{" {
        *i += 1;
        loop {
            match toks.get(*i).map(|t| t.0.as_str()) {
                None => return,
                Some("}") => {
                    *i += 1;
                    return;
                }
                Some(",") => *i += 1,
                Some(_) => {
                    let before = *i;
                    use_tree(toks, i, prefix, out);
                    if *i == before {
                        *i += 1;
                    }
                }
            }
        }
    }
    if t == "*" {
        *i += 1;
        out.push(prefix.to_vec());
        return;
    }
    if !(t.as_bytes()[0].is_ascii_alphabetic() || t.as_bytes()[0] == b'_') {
        return;
    }
    let mut path = prefix.to_vec();
    if t != "self" {
        path.push(t.clone());
    }
    *i += 1;
    if toks.get(*i).map(|t| t.0.as_str()) == Some("::") {
        *i += 1;
        use_tree(toks, i, &path, out);
    } else {
        out.push(path);
        if toks.get(*i).map(|t| t.0.as_str()) == Some("as") {
            *i += 2; // `as name` / `as _`
        }
    }
}

/// Every reference a file makes to the crate's modules. `super::` is
/// resolved against the module the path stands in: the file's, or an
/// inline `mod name { … }` inside it (a `mod tests`, say).
fn edges_of(file: &str, module: &[String], src: &str) -> Vec<Edge> {
    let toks = tokens(&code_only(src));
    let mut out = Vec::new();
    // Inline modules open at a brace depth: (name, depth inside it).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        let (t, line) = (toks[i].0.as_str(), toks[i].1);
        match t {
            "{" => {
                depth += 1;
                let opens_mod = i >= 2 && toks[i - 2].0 == "mod";
                if opens_mod {
                    inline.push((toks[i - 1].0.clone(), depth));
                }
                i += 1;
                continue;
            }
            "}" => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
                continue;
            }
            _ => {}
        }
        let next_is_path = toks.get(i + 1).map(|t| t.0.as_str()) == Some("::");
        let preceded_by_path = i > 0 && toks[i - 1].0 == "::";
        if !next_is_path || preceded_by_path || !(t == "crate" || t == "super") {
            i += 1;
            continue;
        }
        let mut base: Vec<String> = Vec::new();
        let mut j = i;
        if t == "super" {
            base = module.to_vec();
            base.extend(inline.iter().map(|(n, _)| n.clone()));
            while toks.get(j).map(|t| t.0.as_str()) == Some("super")
                && toks.get(j + 1).map(|t| t.0.as_str()) == Some("::")
            {
                base.pop();
                j += 2;
            }
        } else {
            j += 2;
        }
        let mut leaves = Vec::new();
        use_tree(&toks, &mut j, &base, &mut leaves);
        for to in leaves {
            // An inline module's own paths are the file's for the floors.
            out.push(Edge {
                file: file.to_owned(),
                line,
                from: module.to_vec(),
                to,
            });
        }
        i = j.max(i + 1);
    }
    out
}

/// What is wrong with a set of source files, one message per problem.
fn check(files: &BTreeMap<String, String>) -> Vec<String> {
    let floors: BTreeMap<&str, u8> = FLOORS.iter().copied().collect();
    let mut problems = Vec::new();
    let mut edges = Vec::new();
    for (rel, src) in files {
        let Some(module) = module_of(Path::new(rel)) else {
            continue;
        };
        if !floors.contains_key(module[0].as_str()) {
            problems.push(format!(
                "node/src/{rel}: module `{}` has no floor; add it to FLOORS in tests/tests/layers.rs and to the table in node/src/lib.rs",
                module[0]
            ));
            continue;
        }
        edges.extend(edges_of(rel, &module, src));
    }
    // Rule 1: never up a floor.
    for e in &edges {
        let Some(top) = e.to.first() else { continue };
        let (Some(&f_from), Some(&f_to)) =
            (floors.get(e.from[0].as_str()), floors.get(top.as_str()))
        else {
            continue;
        };
        if f_to > f_from {
            problems.push(format!(
                "node/src/{}:{}: `{}` (floor {f_from}) imports `crate::{}` (floor {f_to}): a lower floor never imports an upper one",
                e.file,
                e.line,
                e.from[0],
                e.to.join("::"),
            ));
        }
    }
    // Rule 2: no circles between top-level modules.
    let top: Vec<(String, String, &Edge)> = edges
        .iter()
        .filter_map(|e| {
            let t = e.to.first()?;
            (t != &e.from[0] && floors.contains_key(t.as_str()))
                .then(|| (e.from[0].clone(), t.clone(), e))
        })
        .collect();
    problems.extend(circles("modules", &top));
    // Rule 3: no circles between the files (submodules) of one module.
    for (m, _) in FLOORS {
        let inner: Vec<(String, String, &Edge)> = edges
            .iter()
            .filter(|e| e.from[0] == *m && e.from.len() >= 2)
            .filter_map(|e| {
                let to = e.to.get(1)?;
                (e.to[0] == *m && to != &e.from[1] && files_have(files, m, to))
                    .then(|| (format!("{m}::{}", e.from[1]), format!("{m}::{to}"), e))
            })
            .collect();
        problems.extend(circles(&format!("the files of `{m}`"), &inner));
    }
    problems
}

/// Whether `m::sub` is a file module (not an item of `m`'s root).
fn files_have(files: &BTreeMap<String, String>, m: &str, sub: &str) -> bool {
    files.contains_key(&format!("{m}/{sub}.rs")) || files.contains_key(&format!("{m}/{sub}/mod.rs"))
}

/// Every cycle in a graph, found as a back edge of a depth-first walk,
/// reported with the file and line of each of its edges.
fn circles(what: &str, edges: &[(String, String, &Edge)]) -> Vec<String> {
    let mut adj: BTreeMap<&str, BTreeMap<&str, &Edge>> = BTreeMap::new();
    for (a, b, e) in edges {
        adj.entry(a.as_str())
            .or_default()
            .entry(b.as_str())
            .or_insert(e);
    }
    let mut found: BTreeSet<Vec<String>> = BTreeSet::new();
    let mut done: BTreeSet<&str> = BTreeSet::new();
    fn walk<'a>(
        n: &'a str,
        adj: &BTreeMap<&'a str, BTreeMap<&'a str, &'a Edge>>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
        found: &mut BTreeSet<Vec<String>>,
    ) {
        if let Some(pos) = stack.iter().position(|s| *s == n) {
            let mut cycle: Vec<String> = stack[pos..].iter().map(|s| s.to_string()).collect();
            // Canonical rotation, so each circle is reported once.
            let min = cycle
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.as_str())
                .map(|(i, _)| i)
                .unwrap_or(0);
            cycle.rotate_left(min);
            found.insert(cycle);
            return;
        }
        if done.contains(n) {
            return;
        }
        stack.push(n);
        if let Some(next) = adj.get(n) {
            for m in next.keys() {
                walk(m, adj, stack, done, found);
            }
        }
        stack.pop();
        done.insert(n);
    }
    for n in adj.keys() {
        walk(n, &adj, &mut Vec::new(), &mut done, &mut found);
    }
    found
        .into_iter()
        .map(|cycle| {
            let hops: Vec<String> = cycle
                .iter()
                .zip(cycle.iter().cycle().skip(1))
                .map(|(a, b)| {
                    let e = adj[a.as_str()][b.as_str()];
                    format!("`{a}` → `{b}` (node/src/{}:{})", e.file, e.line)
                })
                .collect();
            format!("a circle between {what}: {}", hops.join(", "))
        })
        .collect()
}

fn read_tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, root, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel, std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn node_src() -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../node/src");
    let files = read_tree(&root);
    assert!(
        files.len() > 30,
        "read only {} files under {}",
        files.len(),
        root.display()
    );
    files
}

#[test]
fn the_node_keeps_its_floors_and_has_no_circles() {
    let problems = check(&node_src());
    assert!(
        problems.is_empty(),
        "the house rules are broken:\n  {}",
        problems.join("\n  ")
    );
}

/// The checker itself: each of the three circles the house issue found,
/// put back into today's tree, is reported with its file and line.
#[test]
fn the_check_catches_the_old_circles() {
    let base = node_src();
    let with = |file: &str, line: &str| {
        let mut t = base.clone();
        let src = t.get_mut(file).unwrap_or_else(|| panic!("{file} is gone"));
        src.push_str(line);
        check(&t)
    };
    // 1. A sink that knows the consensus layer.
    let p = with("sink/hec/service.rs", "\nuse crate::cluster::Lease;\n");
    assert!(
        p.iter().any(|m| m.contains("node/src/sink/hec/service.rs:")
            && m.contains("floor 2")
            && m.contains("crate::cluster::Lease")),
        "{p:#?}"
    );
    // 2. The pipeline reaching into the control plane, which reads the pipeline.
    let p = with(
        "pipeline/spawner.rs",
        "\nfn f(_: crate::control::StatusView) {}\n",
    );
    assert!(
        p.iter()
            .any(|m| m.contains("floor 3") && m.contains("crate::control::StatusView")),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|m| m.starts_with("a circle between modules")
                && m.contains("`control` → `pipeline`")),
        "{p:#?}"
    );
    // 3. Two files of one module importing each other (encode ↔ enrich, today
    //    in `record`: json ↔ slab), in a group use.
    let mut t = base.clone();
    t.get_mut("record/json.rs")
        .unwrap()
        .push_str("\nuse crate::record::{slab::EventSlab, Tags as _};\n");
    t.get_mut("record/slab.rs")
        .unwrap()
        .push_str("\nuse super::json::write_time;\n");
    let p = check(&t);
    assert!(
        p.iter()
            .any(|m| m.starts_with("a circle between the files of `record`")
                && m.contains("`record::json` → `record::slab`")
                && m.contains("`record::slab` → `record::json`")),
        "{p:#?}"
    );
    // A module without a floor is named.
    let mut t = base.clone();
    t.insert("shiny.rs".into(), String::new());
    assert!(check(&t).iter().any(|m| m.contains("`shiny` has no floor")));
}

#[test]
fn paths_are_read_from_code_not_from_comments_or_strings() {
    let src = r#"
        //! Uses `crate::control::grpc` in a doc comment only.
        use crate::{event::AuditEvent, record::{self, Tags}};
        /* crate::cluster::Cluster */
        fn f() { let s = "crate::node::RunningNode"; let c = 'x'; g::<'static>(crate::sls::Cursor::new(s)); }
        mod tests { use super::super::super::fence::Fence; }
    "#;
    let e = edges_of("sink/x.rs", &["sink".into(), "x".into()], src);
    let to: Vec<String> = e.iter().map(|e| e.to.join("::")).collect();
    assert_eq!(
        to,
        [
            "event::AuditEvent",
            "record",
            "record::Tags",
            "sls::Cursor::new",
            "fence::Fence"
        ],
        "{e:#?}"
    );
}
