//! The walk of a config directory: files in name order, `.indexignore` honoured.
//!
//! An `.indexignore` holds gitignore patterns, one a line, relative to its directory:
//! `#` comments, `!` re-includes, a leading or inner `/` anchors to that directory, a
//! trailing `/` matches directories only, `*`, `?`, `[…]` and `**`. The last matching
//! pattern wins, deeper files after shallower ones; an ignored directory is not entered.
//! `.indexignore` itself is never read as config.

use std::fs;
use std::path::{Path, PathBuf};

use super::shown;
use crate::error::{usage, IoContext, Result};

const IGNORE_FILE: &str = ".indexignore";

/// Config files under `dir` (`*.json`, `*.yaml`, `*.yml`), relative to it, in walk order.
pub(super) fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let meta = fs::metadata(dir).at(dir)?;
    if !meta.is_dir() {
        return Err(usage(format!("{}: the catalog's config directory is not a directory", shown(dir))));
    }
    let mut files = Vec::new();
    visit(dir, Path::new(""), &mut Vec::new(), &mut files)?;
    Ok(files)
}

/// Patterns of one `.indexignore`, with the directory (relative to the root) they apply in.
struct Rules {
    base: PathBuf,
    patterns: Vec<Pattern>,
}

struct Pattern {
    glob: String,
    negated: bool,
    dir_only: bool,
    anchored: bool,
}

fn visit(root: &Path, rel: &Path, rules: &mut Vec<Rules>, files: &mut Vec<PathBuf>) -> Result<()> {
    let abs = root.join(rel);
    let mut names: Vec<_> =
        fs::read_dir(&abs).at(&abs)?.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>().at(&abs)?;
    names.sort();
    let own = names.iter().any(|n| n == IGNORE_FILE);
    if own {
        let path = abs.join(IGNORE_FILE);
        let text = fs::read_to_string(&path).at(&path)?;
        rules.push(Rules { base: rel.to_path_buf(), patterns: text.lines().filter_map(Pattern::parse).collect() });
    }
    for name in names.iter().filter(|n| *n != IGNORE_FILE) {
        let child = rel.join(name);
        let path = root.join(&child);
        let kind = fs::symlink_metadata(&path).at(&path)?.file_type();
        if kind.is_symlink() {
            return Err(usage(format!("{}: a symbolic link in a catalog's config directory", shown(&path))));
        }
        if ignored(rules, &child, kind.is_dir()) {
            continue;
        }
        if kind.is_dir() {
            visit(root, &child, rules, files)?;
        } else if kind.is_file() && matches!(child.extension().and_then(|e| e.to_str()), Some("json" | "yaml" | "yml"))
        {
            files.push(child);
        }
    }
    if own {
        rules.pop();
    }
    Ok(())
}

impl Pattern {
    fn parse(line: &str) -> Option<Pattern> {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let (negated, rest) = match line.strip_prefix('!') {
            Some(r) => (true, r),
            None => (false, line.strip_prefix('\\').unwrap_or(line)),
        };
        let dir_only = rest.ends_with('/');
        let rest = rest.trim_end_matches('/');
        let anchored = rest.contains('/');
        let glob = rest.trim_start_matches('/').to_string();
        (!glob.is_empty()).then_some(Pattern { glob, negated, dir_only, anchored })
    }

    fn matches(&self, rel: &str, is_dir: bool) -> bool {
        if self.dir_only && !is_dir {
            return false;
        }
        if self.anchored {
            glob(self.glob.as_bytes(), rel.as_bytes())
        } else {
            let base = rel.rsplit('/').next().unwrap_or(rel);
            glob(self.glob.as_bytes(), base.as_bytes())
        }
    }
}

fn ignored(rules: &[Rules], child: &Path, is_dir: bool) -> bool {
    let mut verdict = false;
    for r in rules {
        let Ok(rel) = child.strip_prefix(&r.base) else { continue };
        let rel = rel.to_string_lossy();
        for p in r.patterns.iter().filter(|p| p.matches(&rel, is_dir)) {
            verdict = !p.negated;
        }
    }
    verdict
}

/// gitignore glob: `*` and `?` stop at `/`, `**` crosses it, `[…]` is a class.
fn glob(pat: &[u8], s: &[u8]) -> bool {
    match pat {
        [] => s.is_empty(),
        [b'*', b'*', rest @ ..] => {
            let rest = rest.strip_prefix(b"/").unwrap_or(rest);
            (0..=s.len()).any(|i| (i == 0 || s[i - 1] == b'/' || rest.is_empty()) && glob(rest, &s[i..]))
        }
        [b'*', rest @ ..] => (0..=s.len()).take_while(|&i| i == 0 || s[i - 1] != b'/').any(|i| glob(rest, &s[i..])),
        [b'?', rest @ ..] => matches!(s, [c, tail @ ..] if *c != b'/' && glob(rest, tail)),
        [b'[', rest @ ..] => match s {
            [c, tail @ ..] => match class(rest, *c) {
                Some((hit, after)) => *c != b'/' && hit && glob(after, tail),
                None => *c == b'[' && glob(rest, tail),
            },
            [] => false,
        },
        [b'\\', c, rest @ ..] | [c, rest @ ..] => matches!(s, [d, tail @ ..] if d == c && glob(rest, tail)),
    }
}

/// A `[…]` class after its `[`: whether it holds `c`, and the pattern after `]`.
fn class(pat: &[u8], c: u8) -> Option<(bool, &[u8])> {
    let (negated, body) = match pat {
        [b'!' | b'^', rest @ ..] => (true, rest),
        _ => (false, pat),
    };
    let close = body.iter().skip(1).position(|&b| b == b']')? + 1;
    let (set, after) = (&body[..close], &body[close + 1..]);
    let mut i = 0;
    let mut found = false;
    while i < set.len() {
        if i + 2 < set.len() && set[i + 1] == b'-' {
            found |= (set[i]..=set[i + 2]).contains(&c);
            i += 3;
        } else {
            found |= set[i] == c;
            i += 1;
        }
    }
    Some((found != negated, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob(b"*.json", b"a.json") && !glob(b"*.json", b"d/a.json"));
        assert!(glob(b"**/a.json", b"x/y/a.json") && glob(b"**/a.json", b"a.json"));
        assert!(glob(b"d/**", b"d/x/y") && glob(b"a/**/b", b"a/b") && glob(b"a/**/b", b"a/x/y/b"));
        assert!(glob(b"f?o", b"foo") && !glob(b"f?o", b"f/o"));
        assert!(glob(b"[a-c]x", b"bx") && !glob(b"[!a-c]x", b"bx") && glob(b"[!a-c]x", b"dx"));
        assert!(glob(b"\\*x", b"*x") && !glob(b"\\*x", b"ax"));
    }

    #[test]
    fn patterns_follow_gitignore() {
        let p = |s| Pattern::parse(s).unwrap();
        assert!(p("*.yaml").matches("deep/er/x.yaml", false));
        assert!(!p("/x.yaml").matches("deep/x.yaml", false) && p("/x.yaml").matches("x.yaml", false));
        assert!(p("tmp/").matches("tmp", true) && !p("tmp/").matches("tmp", false));
        assert!(Pattern::parse("# comment").is_none() && Pattern::parse("   ").is_none());
        let rules = vec![Rules { base: PathBuf::from("pkg"), patterns: vec![p("*.json"), p("!keep.json")] }];
        assert!(ignored(&rules, Path::new("pkg/drop.json"), false));
        assert!(!ignored(&rules, Path::new("pkg/keep.json"), false));
        assert!(!ignored(&rules, Path::new("other/drop.json"), false), "rules apply under their directory only");
    }
}
