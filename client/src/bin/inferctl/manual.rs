//! Shell completions and the man page, generated from the clap definitions so they never
//! drift from `--help`. The .deb installs what `make deb` generates with these.

use std::io::Write;

use clap::CommandFactory;

use crate::exit::{JSON_ERRORS, STATUSES};
use crate::Cli;

/// `inferctl completions SHELL`: the script on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<i32, String> {
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "inferctl",
        &mut std::io::stdout(),
    );
    Ok(0)
}

/// `inferctl man`: the page on stdout.
pub fn man() -> Result<i32, String> {
    render(&mut std::io::stdout()).map_err(|e| e.to_string())?;
    Ok(0)
}

/// The man page: clap_mangen's sections, with EXIT STATUS in place of its generic EXTRA.
pub fn render(out: &mut dyn Write) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(Cli::command());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    man.render_subcommands_section(out)?;
    writeln!(out, ".SH \"EXIT STATUS\"")?;
    for (code, what) in STATUSES {
        writeln!(out, ".TP\n.B {code}\n{what}")?;
    }
    writeln!(out, ".PP\n{}", JSON_ERRORS.replace('\\', "\\\\"))?;
    man.render_version_section(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_man_page_has_every_command_and_the_exit_statuses() {
        let mut page = Vec::new();
        render(&mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(page.starts_with(".ie"), "{}", &page[..80]);
        for c in Cli::command().get_subcommands() {
            assert!(page.contains(c.get_name()), "{} missing", c.get_name());
        }
        assert!(page.contains(".SH \"EXIT STATUS\""));
        assert!(page.contains(".B 5\noverloaded or shutting down: retry later"));
    }

    #[test]
    fn completions_offer_the_subcommands() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "inferctl", &mut script);
            let script = String::from_utf8(script).unwrap();
            for c in ["models", "health", "generate", "embed", "completions"] {
                assert!(script.contains(c), "{shell}: no {c}");
            }
        }
    }
}
