//! `airlift generate`: man pages and shell completions from the CLI definition.

use std::path::Path;

use clap::CommandFactory;

use crate::cli::{Cli, GenerateCommand, Shell};
use crate::error::{IoContext, Status};
use crate::output::Output;

pub fn run(cmd: &GenerateCommand, out: &Output) -> anyhow::Result<Status> {
    match cmd {
        GenerateCommand::Man { dir } => {
            let written = write_man_pages(dir)?;
            out.info(format!("wrote {} man page(s) to {}", written.len(), dir.display()));
        }
        GenerateCommand::Completions { shell } => {
            let mut command = Cli::command();
            let shell = match shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
                Shell::Elvish => clap_complete::Shell::Elvish,
                Shell::Powershell => clap_complete::Shell::PowerShell,
            };
            clap_complete::generate(shell, &mut command, "airlift", &mut std::io::stdout());
        }
    }
    Ok(Status::Ok)
}

/// Render `airlift.1` and one page per subcommand (`airlift-pack.1`, …, and
/// `airlift-catalog-filter.1` for a nested one) into `dir`.
pub fn write_man_pages(dir: &Path) -> crate::error::Result<Vec<String>> {
    std::fs::create_dir_all(dir).at(dir)?;
    let mut written = Vec::new();
    for (name, bytes) in man_pages()? {
        let path = dir.join(&name);
        std::fs::write(&path, bytes).at(&path)?;
        written.push(name);
    }
    Ok(written)
}

/// Every man page, by file name.
pub fn man_pages() -> crate::error::Result<Vec<(String, Vec<u8>)>> {
    let command = Cli::command();
    let mut pages = Vec::new();
    let mut render = |cmd: clap::Command, name: String| -> crate::error::Result<()> {
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut buf).at(&name)?;
        pages.push((format!("{name}.1"), buf));
        Ok(())
    };
    render(command.clone(), "airlift".into())?;
    for sub in command.get_subcommands() {
        let name = format!("airlift-{}", sub.get_name());
        render(sub.clone().name(name.clone()), name.clone())?;
        // `airlift catalog filter` gets `airlift-catalog-filter.1`.
        for nested in sub.get_subcommands() {
            let nested_name = format!("{name}-{}", nested.get_name());
            render(nested.clone().name(nested_name.clone()), nested_name)?;
        }
    }
    Ok(pages)
}
