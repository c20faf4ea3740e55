//! The documentation stays true: committed man pages match the CLI, completions generate,
//! and the README agrees with `airlift --help`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::common;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn readme() -> String {
    fs::read_to_string(repo("README.md")).expect("README.md")
}

fn files_in(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), fs::read(e.path()).unwrap())
        })
        .collect()
}

#[test]
fn committed_man_pages_match_the_cli() {
    const HOW: &str = "the man pages in man/ are stale: run `cargo run -- generate man man` and commit the result";
    let tmp = common::tempdir();
    let out = common::airlift().args(["generate", "man"]).arg(tmp.path()).output().unwrap();
    assert!(out.status.success(), "generate man: {}", String::from_utf8_lossy(&out.stderr));
    let generated = files_in(tmp.path());
    for page in
        ["airlift.1", "airlift-keygen.1", "airlift-pack.1", "airlift-verify.1", "airlift-list.1", "airlift-unpack.1"]
    {
        let text = String::from_utf8_lossy(
            generated.get(page).unwrap_or_else(|| panic!("{page} is generated: {:?}", generated.keys())),
        );
        assert!(text.contains(".TH "), "{page} is a man page");
    }
    assert!(String::from_utf8_lossy(&generated["airlift-pack.1"]).contains("volume\\-size"));

    let committed = repo("man");
    assert!(committed.is_dir(), "{HOW} (man/ is missing)");
    let committed = files_in(&committed);
    assert_eq!(
        committed.keys().collect::<Vec<_>>(),
        generated.keys().collect::<Vec<_>>(),
        "{HOW} (different set of pages)"
    );
    for (name, bytes) in &generated {
        assert!(&committed[name] == bytes, "{HOW} (man/{name} differs)");
    }
}

#[test]
fn shell_completions_generate() {
    let bash = common::airlift().args(["generate", "completions", "bash"]).output().unwrap();
    assert!(bash.status.success(), "bash completions: {}", String::from_utf8_lossy(&bash.stderr));
    let text = String::from_utf8_lossy(&bash.stdout);
    for word in ["airlift", "pack", "verify", "unpack", "--volume-size", "--media", "dvd-dl"] {
        assert!(text.contains(word), "bash completion mentions {word}");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = common::airlift().args(["generate", "completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell} completions: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("airlift") && text.contains("volume-size"), "{shell} completion script:\n{text}");
    }
    let bad = common::airlift().args(["generate", "completions", "tcsh"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2), "an unknown shell is a usage error");
}

fn normalize(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The README's exit-code table: code → meaning.
fn readme_exit_codes() -> BTreeMap<u8, String> {
    let readme = readme();
    let start = readme.find("\n## Exit codes").expect("README.md has an 'Exit codes' section");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    let mut codes = BTreeMap::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() == 2 {
            if let Ok(code) = cells[0].parse::<u8>() {
                assert!(codes.insert(code, normalize(cells[1])).is_none(), "code {code} listed twice");
            }
        }
    }
    codes
}

/// The "Exit codes:" section at the end of `airlift --help`: code → meaning.
fn help_exit_codes() -> BTreeMap<u8, String> {
    let out = common::airlift().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let start = help.find("Exit codes:").expect("`airlift --help` has an 'Exit codes:' section");
    let mut codes: BTreeMap<u8, String> = BTreeMap::new();
    let mut current = None;
    for line in help[start..].lines().skip(1) {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let (first, rest) = trimmed.split_once(char::is_whitespace).unwrap_or((trimmed, ""));
        match first.parse::<u8>() {
            Ok(code) if indent <= 4 => {
                codes.insert(code, normalize(rest));
                current = Some(code);
            }
            _ if !trimmed.is_empty() && current.is_some() && indent > 4 => {
                let entry = codes.get_mut(&current.unwrap()).unwrap();
                entry.push(' ');
                entry.push_str(&normalize(trimmed));
            }
            _ => break,
        }
    }
    codes
}

#[test]
fn the_readme_exit_codes_are_the_ones_airlift_help_documents() {
    let readme = readme_exit_codes();
    let help = help_exit_codes();
    assert_eq!(readme.keys().copied().collect::<Vec<_>>(), [0, 1, 2, 3], "README exit-code table: {readme:?}");
    assert_eq!(help.keys().copied().collect::<Vec<_>>(), [0, 1, 2, 3], "`airlift --help` exit codes: {help:?}");
    // The headline of each code (before the colon) is the same.
    for code in 0..=3u8 {
        let head = |s: &str| s.split(':').next().unwrap().trim().to_string();
        assert_eq!(head(&readme[&code]), head(&help[&code]), "meaning of exit code {code}");
    }
    assert_eq!(readme[&0], "success");
    // And the full descriptions agree word for word (src/cli.rs EXIT_CODES vs README.md).
    for code in 0..=3u8 {
        assert_eq!(
            readme[&code], help[&code],
            "exit code {code}: README.md and `airlift --help` (src/cli.rs EXIT_CODES) describe it differently"
        );
    }
}

#[test]
fn the_readme_starts_with_the_demo_and_the_test_suite() {
    let readme = readme();
    let mut lines = readme.lines().skip_while(|l| !l.trim_start().starts_with("```"));
    let fence = lines.next().expect("README.md has a code block");
    assert!(fence.trim_start().starts_with("```"));
    let block: Vec<&str> = lines.take_while(|l| !l.trim_start().starts_with("```")).collect();
    let commands: Vec<&str> =
        block.iter().map(|l| l.split('#').next().unwrap().trim()).filter(|c| !c.is_empty()).collect();
    assert!(commands.contains(&"./scripts/demo.sh"), "first code block: {block:?}");
    assert!(commands.contains(&"cargo test"), "first code block: {block:?}");
    assert!(repo("scripts/demo.sh").is_file(), "scripts/demo.sh exists");
}

#[test]
fn the_readme_documents_every_subcommand_and_media_preset() {
    let readme = readme();
    for sub in ["keygen", "pack", "verify", "unpack", "list", "generate", "repair"] {
        assert!(readme.contains(&format!("airlift {sub}")), "README mentions `airlift {sub}`");
        let out = common::airlift().args([sub, "--help"]).output().unwrap();
        assert!(out.status.success(), "airlift {sub} --help");
    }
    let pack_help = common::airlift().args(["pack", "--help"]).output().unwrap();
    let pack_help = String::from_utf8_lossy(&pack_help.stdout);
    for media in ["fat32", "dvd", "dvd-dl", "bd25"] {
        assert!(pack_help.contains(media), "`airlift pack --help` offers --media {media}");
    }
    assert!(readme.contains("--media fat32|dvd|dvd-dl|bd25"), "README lists the media presets");
}
