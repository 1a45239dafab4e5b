//! `pipedemo completions SHELL`: a completion script for bash, zsh, fish, elvish or
//! PowerShell, printed on stdout.

use std::process::ExitCode;

use anyhow::Result;
use clap_complete::Shell;

/// The flags of `pipedemo completions`.
#[derive(clap::Args, Clone, Debug)]
#[command(after_help = "Install, e.g.:
  bash: pipedemo completions bash > ~/.local/share/bash-completion/completions/pipedemo
  zsh:  pipedemo completions zsh > ~/.zfunc/_pipedemo   (with fpath+=~/.zfunc before compinit)
  fish: pipedemo completions fish > ~/.config/fish/completions/pipedemo.fish")]
pub struct Args {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Prints the completion script for `cmd`, the whole command line (passed in by the caller,
/// which owns it).
pub fn command(a: &Args, mut cmd: clap::Command) -> Result<ExitCode> {
    clap_complete::generate(a.shell, &mut cmd, "pipedemo", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
