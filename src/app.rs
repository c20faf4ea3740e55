//! Dispatch: parse, run one command, turn its result into an exit code.

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::error::{Error, Status};
use crate::output::Output;
use crate::text::terminal_safe;

pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { Status::Usage.code() } else { 0 };
            let _ = e.print();
            // `--json` promises one document on stdout, also when the arguments are wrong.
            if code != 0 && std::env::args_os().any(|a| a == "--json") {
                Output::new(true, true).document(&serde_json::json!({
                    "status": "error",
                    "exit_code": code,
                    "error": e.kind().to_string(),
                    "causes": [e.to_string().trim().to_string()],
                }));
            }
            return ExitCode::from(code);
        }
    };
    let out = Output::new(cli.global.json, cli.global.quiet);
    let result = match &cli.command {
        Command::Keygen(a) => crate::commands::keygen::run(a, &out),
        Command::Pack(a) => crate::commands::pack::run(a, &out),
        Command::Verify(a) => crate::commands::verify::run(a, &out),
        Command::List(a) => crate::commands::list::run(a, &out),
        Command::Evidence(a) => crate::commands::evidence::run(a, &out),
        Command::Unpack(a) => crate::commands::unpack::run(a, &out),
        Command::Repair(a) => crate::commands::repair::run(a, &out),
        Command::Receipt(a) => crate::commands::receipt::run(a, &out),
        Command::Install(a) => crate::commands::install::run(a, &out),
        Command::Serve(a) => crate::commands::serve::run(a, &out),
        Command::Catalog(c) => crate::commands::catalog::run(c, &out),
        Command::Generate(g) => crate::commands::generate::run(g, &out),
        Command::GraphDataCopy(a) => crate::commands::graph_data_copy::run(a, &out),
        Command::Status(a) => crate::commands::status::run(a, &out),
        Command::Uninstall(a) => crate::commands::uninstall::run(a, &out),
        Command::User(c) => crate::commands::user::run(c, &out),
        Command::Fsck(a) => crate::commands::fsck::run(a, &out),
        Command::Gc(a) => crate::commands::gc::run(a, &out),
        Command::Prune(a) => crate::commands::prune::run(a, &out),
    };
    match result {
        Ok(status) => ExitCode::from(status.code()),
        Err(err) => {
            let status = classify(&err);
            report_error(&out, &err, status);
            ExitCode::from(status.code())
        }
    }
}

/// The exit status an error stands for: integrity failures are 1, everything else 2.
pub fn classify(err: &anyhow::Error) -> Status {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<Error>() {
            return e.status();
        }
        if let Some(e) = cause.downcast_ref::<crate::minisign::Error>() {
            return if e.is_integrity() { Status::Integrity } else { Status::Usage };
        }
    }
    Status::Usage
}

fn report_error(out: &Output, err: &anyhow::Error, status: Status) {
    // A cause already spelled out at the end of the message before it is not repeated.
    let mut causes: Vec<String> = Vec::new();
    let mut previous = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !previous.ends_with(&text) {
            causes.push(text.clone());
        }
        previous = text;
    }
    // A refusal by policy carries its own hint; other integrity errors are damage.
    let specific = err.chain().find_map(|c| match c.downcast_ref::<Error>() {
        Some(Error::Refused { hint, .. }) => Some(hint.as_str()),
        _ => None,
    });
    // Not enough free space: one line per short filesystem, and its own hint.
    let shortage = err.chain().find_map(|c| match c.downcast_ref::<Error>() {
        Some(Error::NoSpace(shortage)) => Some(shortage),
        _ => None,
    });
    let hint = match status {
        Status::Integrity => {
            Some(specific.unwrap_or("do not use this bundle: obtain a good copy of the named file and run again"))
        }
        _ => shortage.map(|_| crate::space::Shortage::HINT),
    };
    if out.json() {
        let mut doc = serde_json::json!({
            "status": "error",
            "exit_code": status.code(),
            "error": err.to_string(),
            "causes": causes,
        });
        if let Some(shortage) = shortage {
            doc["space"] = serde_json::json!(shortage);
        }
        out.document(&doc);
    }
    eprintln!("error: {}", terminal_safe(&err.to_string()));
    for line in shortage.map(|s| s.lines()).unwrap_or_default() {
        eprintln!("  {}", terminal_safe(&line));
    }
    for c in &causes {
        eprintln!("caused by: {}", terminal_safe(c));
    }
    if let Some(h) = hint {
        eprintln!("hint: {h}");
    }
}
