//! The one output gate: human text and progress go to stderr, data to stdout, and with
//! `--json` exactly one JSON document goes to stdout, on failure too. Every human line
//! passes [`terminal_safe`], so no string can drive the terminal (JSON is exact: its
//! encoder escapes control characters itself).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::progress::Progress;
use crate::text::terminal_safe;

pub struct Output {
    json: bool,
    quiet: bool,
    stderr_tty: bool,
    /// Every bar is drawn through this, so bars of work running at the same time (a
    /// fetch and the pack it feeds) stack instead of overwriting each other.
    bars: MultiProgress,
    /// Fields every JSON document of this run carries (`keep`).
    kept: Mutex<serde_json::Map<String, serde_json::Value>>,
}

impl Output {
    pub fn new(json: bool, quiet: bool) -> Output {
        Output {
            json,
            quiet,
            stderr_tty: std::io::stderr().is_terminal(),
            bars: MultiProgress::new(),
            kept: Mutex::new(serde_json::Map::new()),
        }
    }

    pub fn json(&self) -> bool {
        self.json
    }

    /// An informational line on stderr (suppressed by `--quiet`).
    pub fn info(&self, msg: impl std::fmt::Display) {
        if !self.quiet {
            self.bars.suspend(|| eprintln!("{}", terminal_safe(&msg.to_string())));
        }
    }

    /// A prompt on stderr (insert the next disc), shown even with `--quiet`: the run waits
    /// for what it asks.
    pub fn prompt(&self, msg: impl std::fmt::Display) {
        self.bars.suspend(|| eprintln!("{}", terminal_safe(&msg.to_string())));
    }

    /// A warning on stderr, shown even with `--quiet`.
    pub fn warn(&self, msg: impl std::fmt::Display) {
        self.bars.suspend(|| eprintln!("warning: {}", terminal_safe(&msg.to_string())));
    }

    /// Human-readable data on stdout; nothing in `--json` mode (the JSON document says it).
    pub fn data(&self, text: impl std::fmt::Display) {
        if !self.json {
            write_stdout(&format!("{}\n", terminal_safe(&text.to_string())));
        }
    }

    /// Keep `key: value` for the run's JSON document, whatever it turns out to be: the
    /// success report or the error document of a run that fails later (e.g. the
    /// credentials of a registry installed on first use). A field the document sets
    /// itself wins.
    pub fn keep(&self, key: &str, value: serde_json::Value) {
        if let Ok(mut kept) = self.kept.lock() {
            kept.insert(key.to_string(), value);
        }
    }

    /// The one JSON document of a `--json` run, with the fields kept by `keep`.
    pub fn document(&self, value: &serde_json::Value) {
        if self.json {
            let mut value = value.clone();
            if let (Some(doc), Ok(kept)) = (value.as_object_mut(), self.kept.lock()) {
                for (k, v) in kept.iter() {
                    doc.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            let mut text = serde_json::to_string_pretty(&value).unwrap_or_else(|_| "{}".into());
            text.push('\n');
            write_stdout(&text);
        }
    }

    /// A progress reporter: bars when stderr is a terminal, nothing otherwise.
    pub fn progress(&self) -> Box<dyn Progress> {
        if self.stderr_tty && !self.quiet {
            Box::new(Bars { multi: self.bars.clone(), bar: Mutex::new(None) })
        } else {
            Box::new(crate::progress::Silent)
        }
    }
}

/// Write to stdout; a closed pipe ends the output quietly.
fn write_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    if out.write_all(text.as_bytes()).and_then(|_| out.flush()).is_err() {
        // Broken pipe (e.g. `| head`): nothing more to say.
    }
}

struct Bars {
    multi: MultiProgress,
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress for Bars {
    fn start(&self, label: &str, total: u64) {
        let bar = self.multi.add(ProgressBar::new(total));
        let style =
            ProgressStyle::with_template("{msg:>10} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(label.to_string());
        if let Ok(mut slot) = self.bar.lock() {
            if let Some(old) = slot.replace(bar) {
                old.finish_and_clear();
                self.multi.remove(&old);
            }
        }
    }

    fn advance(&self, n: u64) {
        if let Ok(slot) = self.bar.lock() {
            if let Some(bar) = slot.as_ref() {
                bar.inc(n);
            }
        }
    }

    fn finish(&self) {
        if let Ok(mut slot) = self.bar.lock() {
            if let Some(bar) = slot.take() {
                bar.finish_and_clear();
                self.multi.remove(&bar);
            }
        }
    }
}
