//! `airlift user add|passwd|remove|list`: a registry root's users (see `registry::users`).

use std::io::IsTerminal;
use std::path::Path;

use serde_json::json;

use crate::cli::UserCommand;
use crate::error::{usage, Error, Result, Status};
use crate::output::Output;
use crate::registry::users::{self, Account, Role};
use crate::text::untrusted;

pub fn run(command: &UserCommand, out: &Output) -> anyhow::Result<Status> {
    let doc = match command {
        UserCommand::Add(a) => {
            let role = if a.read_only { Role::ReadOnly } else { Role::ReadWrite };
            users::check_user(&a.name)?;
            let (password, generated) = password(a.password_file.as_deref(), &a.name)?;
            let account = users::add(&a.root.root, &a.name, role, &password)?;
            changed(out, "added", &a.root.root, &account, generated.then_some(password))
        }
        UserCommand::Passwd(a) => {
            users::check_user(&a.name)?;
            let (password, generated) = password(a.password_file.as_deref(), &a.name)?;
            let account = users::set_password(&a.root.root, &a.name, &password)?;
            changed(out, "password-changed", &a.root.root, &account, generated.then_some(password))
        }
        UserCommand::Remove(a) => {
            let account = users::remove(&a.root.root, &a.name, a.force)?;
            changed(out, "removed", &a.root.root, &account, None)
        }
        UserCommand::List(a) => {
            let accounts = users::list(&a.root)?;
            for account in &accounts {
                out.data(format!("{}\t{}", untrusted(&account.name), account.role.as_str()));
            }
            json!({ "status": "ok", "exit_code": 0, "root": a.root, "users": accounts })
        }
    };
    out.document(&doc);
    Ok(Status::Ok)
}

/// Say what changed (and the generated password, once) and return the JSON document.
fn changed(out: &Output, action: &str, root: &Path, account: &Account, generated: Option<String>) -> serde_json::Value {
    let (name, role) = (&account.name, account.role.as_str());
    let what = match action {
        "added" => format!("Added user {name} ({role}) to {}", root.display()),
        "removed" => format!("Removed user {name} ({role}) from {}", root.display()),
        _ => format!("New password for user {name} ({role}) in {}", root.display()),
    };
    out.data(what);
    if let Some(p) = &generated {
        out.data(format!("  password:  {p}\n             (shown only now: the root keeps only its bcrypt hash)"));
    }
    out.info("a running `airlift serve` takes the change within a second");
    let mut doc = json!({ "status": "ok", "exit_code": 0, "action": action, "root": root, "user": name, "role": role });
    if let Some(p) = generated {
        doc["password"] = json!(p);
    }
    doc
}

/// The password for `name`: `file`'s, else asked twice on a terminal, else generated
/// (then true: it is printed once).
fn password(file: Option<&Path>, name: &str) -> Result<(String, bool)> {
    if let Some(file) = file {
        return Ok((users::read_password_file(file)?, false));
    }
    if !std::io::stdin().is_terminal() {
        return Ok((users::generate_password()?, true));
    }
    let ask = |prompt: &str| rpassword::prompt_password(prompt).map_err(|e| Error::io("/dev/tty", e));
    let first = ask(&format!("Password for {name}: "))?;
    users::check_password(&first, "the terminal")?;
    if ask("Again: ")? != first {
        return Err(usage("the two passwords differ: nothing was changed"));
    }
    Ok((first, false))
}
