//! The layering of src/ holds: no module imports a module at or above its own layer.
//!
//! The order is read from one place, the block between `<!-- layers` and `<!-- /layers -->` in
//! the crate docs of src/lib.rs (`a > b > {c, d}`: top to bottom, `{...}` one layer). Every
//! `src/**/*.rs` file of the library is scanned for `crate::<module>` paths (in `use`
//! statements and in code, `crate::{a, b::c}` groups included, and `super::` chains that climb
//! to the crate root); comments, string literals and `#[cfg(test)]` modules are skipped, since
//! tests are not part of what ships. A failure names the file, the line and the import.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Layer index (0 = top) of every top-level module named in the block.
type Layers = BTreeMap<String, usize>;

fn parse_layers(lib_rs: &str) -> Layers {
    let start = lib_rs
        .find("<!-- layers")
        .expect("src/lib.rs has a `<!-- layers ... -->` block");
    let end = lib_rs[start..]
        .find("<!-- /layers -->")
        .map(|end| start + end)
        .expect("the layers block of src/lib.rs ends with `<!-- /layers -->`");
    let block = &lib_rs[start..end];
    // The order is the text after the first line's comment that contains a `>`.
    let text: String = block
        .lines()
        .skip(1)
        .map(|line| line.trim_start().trim_start_matches("//!").trim())
        .skip_while(|line| !line.contains('>'))
        .collect::<Vec<_>>()
        .join(" ");
    let mut layers = Layers::new();
    for (index, layer) in text.split('>').enumerate() {
        let layer = layer.trim().trim_start_matches('{').trim_end_matches('}');
        for name in layer.split(',').map(str::trim) {
            assert!(
                !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "unreadable module name {name:?} in the layers block of src/lib.rs: {text:?}"
            );
            assert!(
                layers.insert(name.to_string(), index).is_none(),
                "{name} is named twice in the layers block"
            );
        }
    }
    layers
}

/// Blanks comments, string and char literals (keeping line breaks, so line numbers hold).
fn strip_comments_and_strings(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && (i == 0 || !is_ident(chars[i - 1]))
        {
            // A raw string r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let closing: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let rest: String = chars[j + 1..].iter().collect();
            let len = rest
                .find(&closing)
                .map_or(rest.chars().count(), |at| rest[..at].chars().count());
            let end = (j + 1 + len + closing.len()).min(chars.len());
            for &skipped in &chars[i..end] {
                out.push(blank(skipped));
            }
            i = end;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            // A char literal ('x', '\n', '\''); a lifetime ('a) has no closing quote.
            let mut j = i + 1;
            if chars.get(j) == Some(&'\\') {
                j += 2;
            } else {
                j += 1;
            }
            while j < chars.len() && chars[j] != '\'' {
                j += 1;
            }
            for &skipped in &chars[i..(j + 1).min(chars.len())] {
                out.push(blank(skipped));
            }
            i = j + 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Blanks every `#[cfg(test)] mod name { ... }` block; returns the names of `#[cfg(test)] mod
/// name;` declarations (test modules in files of their own).
fn strip_test_modules(code: &str) -> (String, Vec<String>) {
    let mut code = code.to_string();
    let mut test_files = Vec::new();
    let mut from = 0;
    while let Some(found) = code[from..].find("#[cfg(test)]") {
        let attr = from + found;
        let after = attr + "#[cfg(test)]".len();
        let rest = code[after..].trim_start();
        let rest_at = code.len() - rest.len();
        let Some(item) = rest
            .strip_prefix("pub mod ")
            .or_else(|| rest.strip_prefix("mod "))
        else {
            from = after;
            continue;
        };
        let name: String = item.chars().take_while(|&c| is_ident(c)).collect();
        let after_name = item[name.len()..].trim_start();
        if after_name.starts_with(';') {
            test_files.push(name);
            from = after;
            continue;
        }
        let open = rest_at + (rest.len() - after_name.len());
        assert!(after_name.starts_with('{'), "unexpected test module form");
        let mut depth = 0;
        let mut end = open;
        for (offset, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + offset + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        let blanked: String = code[attr..end]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        code.replace_range(attr..end, &blanked);
        from = attr + blanked.len();
    }
    (code, test_files)
}

/// One reference to a top-level module: the line (1-based) and the path as written.
#[derive(Debug, PartialEq)]
struct Reference {
    line: usize,
    top: String,
    text: String,
}

/// The top-level modules `code` refers to. `depth` is the number of `super::` that reach the
/// crate root from this file (1 for src/a.rs and src/a/mod.rs, 2 for src/a/b.rs, ...).
fn references(code: &str, depth: usize) -> Vec<Reference> {
    let mut found = Vec::new();
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let bytes = code.as_bytes();
    let starts_word = |at: usize| at == 0 || !is_ident(bytes[at - 1] as char);
    let mut push = |at: usize, top: &str, text: &str| {
        found.push(Reference {
            line: line_of(at),
            top: top.to_string(),
            text: text.split_whitespace().collect::<Vec<_>>().join(" "),
        });
    };
    // crate::name and crate::{a, b::c}
    for (at, _) in code.match_indices("crate::") {
        if !starts_word(at) {
            continue;
        }
        let rest = code[at + "crate::".len()..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            let mut level = 0;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '{' => level += 1,
                        '}' if level == 0 => return true,
                        '}' => level -= 1,
                        _ => {}
                    }
                    false
                })
                .map_or(group.len(), |(end, _)| end);
            let group = &group[..end];
            let text = format!("crate::{{{group}}}");
            let mut level = 0;
            let mut item_start = true;
            for (offset, c) in group.char_indices() {
                match c {
                    '{' => level += 1,
                    '}' => level -= 1,
                    ',' if level == 0 => item_start = true,
                    c if item_start && is_ident(c) => {
                        item_start = false;
                        let name: String = group[offset..]
                            .chars()
                            .take_while(|&c| is_ident(c))
                            .collect();
                        if name != "self" {
                            push(at, &name, &text);
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
            push(at, &name, &path_text(&code[at..]));
        }
    }
    // super::super::...::name climbing to the crate root
    for (at, _) in code.match_indices("super::") {
        if !starts_word(at) || (at >= 2 && &code[at - 2..at] == "::") {
            continue;
        }
        let mut rest = &code[at..];
        let mut climbs = 0;
        while let Some(next) = rest.strip_prefix("super::") {
            climbs += 1;
            rest = next;
        }
        if climbs >= depth {
            let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
            push(at, &name, &path_text(&code[at..]));
        }
    }
    found
}

/// The path at the start of `code`, with its `{...}` group if it ends in one.
fn path_text(code: &str) -> String {
    let path_len = code
        .find(|c: char| !(is_ident(c) || c == ':'))
        .unwrap_or(code.len());
    let path = &code[..path_len];
    if path.ends_with("::") && code[path_len..].starts_with('{') {
        let group_len = code[path_len..].find('}').map_or(0, |end| end + 1);
        return code[..path_len + group_len].to_string();
    }
    path.to_string()
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
}

/// The top-level module a file of src/ belongs to, and its `super::` depth to the crate root.
/// `None` for the crate root and the binaries (src/main.rs, src/bin/).
fn module_of(relative: &Path) -> Option<(String, usize)> {
    let parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    if parts[0] == "lib.rs" || parts[0] == "main.rs" || parts[0] == "bin" {
        return None;
    }
    let top = parts[0].trim_end_matches(".rs").to_string();
    let last = parts.last().unwrap();
    let depth = if last == "mod.rs" {
        parts.len() - 1
    } else {
        parts.len()
    };
    Some((top, depth))
}

/// The files of `#[cfg(test)] mod name;` declared in `file`.
fn test_module_files(file: &Path, names: &[String]) -> Vec<PathBuf> {
    let dir = if file.file_name().is_some_and(|name| name == "mod.rs") {
        file.parent().unwrap().to_path_buf()
    } else {
        file.with_extension("")
    };
    names
        .iter()
        .flat_map(|name| {
            [
                dir.join(format!("{name}.rs")),
                dir.join(name).join("mod.rs"),
            ]
        })
        .collect()
}

/// Every import that goes up (or sideways within a layer): "file:line: text (why)".
fn violations(src: &Path, layers: &Layers) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut scanned = Vec::new();
    let mut test_files = Vec::new();
    for file in &files {
        let source = fs::read_to_string(file).unwrap();
        let (code, tests) = strip_test_modules(&strip_comments_and_strings(&source));
        test_files.extend(test_module_files(file, &tests));
        scanned.push((file.clone(), code));
    }
    let mut found = Vec::new();
    for (file, code) in &scanned {
        if test_files.contains(file) {
            continue;
        }
        let relative = file.strip_prefix(src).unwrap();
        let Some((top, depth)) = module_of(relative) else {
            continue;
        };
        let Some(&own) = layers.get(&top) else {
            found.push(format!(
                "src/{}: module `{top}` is not in the layers block of src/lib.rs",
                relative.display()
            ));
            continue;
        };
        for reference in references(code, depth) {
            if reference.top == top {
                continue;
            }
            let why = match layers.get(&reference.top) {
                None => format!("`{}` is not in the layers block", reference.top),
                Some(&other) if other < own => {
                    format!("{} is above {top} in the layers", reference.top)
                }
                Some(&other) if other == own => {
                    format!("{} is in the same layer as {top}", reference.top)
                }
                Some(_) => continue,
            };
            found.push(format!(
                "src/{}:{}: `{}` ({why})",
                relative.display(),
                reference.line,
                reference.text
            ));
        }
    }
    found
}

#[test]
fn no_module_imports_one_at_or_above_its_layer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib_rs = fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let layers = parse_layers(&lib_rs);
    let found = violations(&root.join("src"), &layers);
    assert!(
        found.is_empty(),
        "imports against the layering of src/lib.rs:\n{}",
        found.join("\n")
    );
}

#[test]
fn every_module_of_the_crate_is_in_the_layers_block() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib_rs = fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let layers = parse_layers(&lib_rs);
    let code = strip_comments_and_strings(&lib_rs);
    let declared: Vec<String> = code
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line
                .strip_prefix("pub mod ")
                .or_else(|| line.strip_prefix("pub(crate) mod "))
                .or_else(|| line.strip_prefix("mod "))?;
            Some(rest.trim_end_matches(';').trim().to_string())
        })
        .collect();
    let mut declared_sorted = declared.clone();
    declared_sorted.sort();
    let named: Vec<String> = layers.keys().cloned().collect();
    assert_eq!(
        declared_sorted, named,
        "the modules src/lib.rs declares and those its layers block names differ"
    );
}

// The scanner itself, on sources written to break it.

fn tops(code: &str, depth: usize) -> Vec<String> {
    let (code, _) = strip_test_modules(&strip_comments_and_strings(code));
    references(&code, depth)
        .into_iter()
        .map(|reference| reference.top)
        .collect()
}

#[test]
fn the_scanner_finds_paths_groups_and_super_chains() {
    let code = "use crate::store::Store;\n\
                use crate::{stats::{self, Event}, key};\n\
                fn f() { crate::remote::fetch(); }\n\
                use super::super::wrapper::run;\n";
    assert_eq!(
        tops(code, 2),
        ["store", "stats", "key", "remote", "wrapper"]
    );
    // One `super::` from src/a/b.rs stays inside `a`.
    assert_eq!(tops("use super::keying;", 2), Vec::<String>::new());
}

#[test]
fn the_scanner_skips_comments_strings_and_test_modules() {
    let code = "//! See [`crate::wrapper`].\n\
                /* crate::cli /* nested crate::cli */ crate::cli */\n\
                const A: &str = \"crate::commands\";\n\
                const B: &str = r#\"crate::commands \" \"#;\n\
                const C: char = '\"';\n\
                fn lifetime<'a>(x: &'a str) -> &'a str { x }\n\
                use crate::hash::Key;\n\
                #[cfg(test)]\n\
                mod tests { use crate::wrapper::run; fn f() { if true { } } }\n\
                use crate::store::Store;\n";
    assert_eq!(tops(code, 1), ["hash", "store"]);
    let (_, files) = strip_test_modules("#[cfg(test)]\nmod tests;\n");
    assert_eq!(files, ["tests"]);
}

#[test]
fn a_violation_names_the_file_the_line_and_the_import() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    fs::create_dir_all(dir.join("store/gc")).unwrap();
    fs::write(
        dir.join("store/gc/auto.rs"),
        "use crate::hash::Key;\nuse crate::stats::unix_ms;\n",
    )
    .unwrap();
    fs::write(dir.join("hash.rs"), "use crate::{config, store::Store};\n").unwrap();
    let layers = parse_layers(
        "//! <!-- layers -->\n//! stats > store > hash > {config}\n//! <!-- /layers -->",
    );
    let found = violations(dir, &layers);
    assert_eq!(
        found,
        [
            "src/hash.rs:1: `crate::{config, store::Store}` (store is above hash in the layers)",
            "src/store/gc/auto.rs:2: `crate::stats::unix_ms` (stats is above store in the layers)",
        ]
    );
}
