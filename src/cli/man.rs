//! `gemctl man`: the manual pages, generated from the same clap definitions as
//! `--help` (clap_mangen), with the exit codes and environment added.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory};

use super::completions::write_stdout;
use super::{Cli, EXIT_CODES};
use crate::error::{Error, exit};

/// Print gemctl's manual page (roff) to stdout, or write one page per command
///
/// Read it at once with `gemctl man | man -l -`; install it with
///
///   gemctl man > /usr/local/share/man/man1/gemctl.1
///
/// and `man gemctl` shows it. `gemctl man apply` prints the page of one command
/// (gemctl-apply(1)); `--dir /usr/local/share/man/man1` writes them all
/// (gemctl.1, gemctl-apply.1, …).
///
/// Exit codes: 0 printed or written, 1 error (an unknown command, a directory
/// that cannot be written).
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub(super) struct ManArgs {
    /// Print this command's page instead of gemctl's (e.g. `apply`).
    #[arg(value_name = "COMMAND", conflicts_with = "dir")]
    command: Option<String>,
    /// Write every page (gemctl.1 and gemctl-COMMAND.1) into this directory.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub(super) fn man(args: ManArgs) -> Result<u8, Error> {
    let mut cli = Cli::command().disable_help_subcommand(true);
    cli.build();
    if let Some(dir) = args.dir {
        return write_pages(&cli, &dir);
    }
    let page = match &args.command {
        None => main_page(&cli)?,
        Some(name) => {
            let sub = cli
                .find_subcommand(name)
                .ok_or_else(|| Error::Usage(format!("no command {name:?} (see gemctl --help)")))?;
            render(clap_mangen::Man::new(sub.clone()))?
        }
    };
    write_stdout(&page)?;
    Ok(exit::OK)
}

/// One of clap_mangen's section renderers.
type Section = fn(&clap_mangen::Man, &mut dyn Write) -> std::io::Result<()>;

/// gemctl(1): clap_mangen's sections, with the exit codes and the environment
/// under their usual man-page headings instead of a heading-less "EXTRA".
fn main_page(cli: &clap::Command) -> Result<Vec<u8>, Error> {
    let man = clap_mangen::Man::new(cli.clone());
    let mut out = Vec::new();
    let sections: [Section; 6] = [
        clap_mangen::Man::render_title,
        clap_mangen::Man::render_name_section,
        clap_mangen::Man::render_synopsis_section,
        clap_mangen::Man::render_description_section,
        clap_mangen::Man::render_options_section,
        clap_mangen::Man::render_subcommands_section,
    ];
    for section in sections {
        section(&man, &mut out).map_err(roff_error)?;
    }
    // Each command in full, so that one page installed as gemctl.1 is enough.
    out.extend_from_slice(b".SH \"COMMANDS IN DETAIL\"\n");
    for sub in cli.get_subcommands() {
        out.extend(command_section(sub)?);
    }
    let exit_codes = EXIT_CODES
        .lines()
        .skip(1) // the heading
        .map(roff_line)
        .collect::<Vec<_>>()
        .join("\n");
    write!(
        out,
        ".SH \"EXIT STATUS\"\n\
         Each command's page (and --help) says which it uses.\n\
         .PP\n.nf\n{exit_codes}\n.fi\n\
         .SH ENVIRONMENT\n\
         .TP\n\\fBDOCKER_HOST\\fR, \\fBDOCKER_CONTEXT\\fR, \\fBDOCKER_CONFIG\\fR, \\fBDOCKER_TLS_VERIFY\\fR, \\fBDOCKER_CERT_PATH\\fR\nThe engine to talk to, found as the docker CLI finds it (default: the current context, else the local socket); it must be on this machine.\n\
         .TP\n\\fBNO_COLOR\\fR\nSet: no colours, even on a terminal.\n\
         .TP\n\\fBGEMCTL_LOG\\fR\nA log filter (e.g. \\fBdebug\\fR, \\fBgemctl=trace\\fR); \
         log lines go to stderr.\n\
         .SH FILES\n\
         .TP\n\\fB<storage>/.gemctl/\\fR\ngemctl's records for a project: the live generation, \
         what served, failures, reports, the lock, the pin.\n\
         .TP\n\\fBcontrib/systemd/\\fR\nUnits that run \\fBgemctl reconcile\\fR as a loop or on a timer.\n"
    )
    .map_err(roff_error)?;
    man.render_version_section(&mut out).map_err(roff_error)?;
    Ok(out)
}

/// One command's synopsis, description and options, under a `.SS` heading of
/// its own instead of the `.SH` sections of its page.
fn command_section(sub: &clap::Command) -> Result<Vec<u8>, Error> {
    let man = clap_mangen::Man::new(sub.clone());
    let mut body = Vec::new();
    man.render_synopsis_section(&mut body).map_err(roff_error)?;
    man.render_description_section(&mut body)
        .map_err(roff_error)?;
    man.render_options_section(&mut body).map_err(roff_error)?;
    let body = String::from_utf8_lossy(&body);
    let mut out = format!(".SS \"gemctl {}\"\n", sub.get_name());
    for line in body.lines() {
        match line.strip_prefix(".SH ") {
            Some("SYNOPSIS" | "DESCRIPTION") => out.push_str(".PP\n"),
            Some(heading) => out.push_str(&format!(".PP\n\\fI{}\\fR\n", heading.trim_matches('"'))),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    Ok(out.into_bytes())
}

/// One line of preformatted text as roff: backslashes escaped, and a leading `.`
/// or `'` kept from being read as a request.
fn roff_line(line: &str) -> String {
    let line = line.replace('\\', "\\e");
    if line.starts_with('.') || line.starts_with('\'') {
        format!("\\&{line}")
    } else {
        line
    }
}

fn render(man: clap_mangen::Man) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    man.render(&mut out).map_err(roff_error)?;
    Ok(out)
}

/// gemctl.1 and one gemctl-COMMAND.1 per command, into `dir`.
fn write_pages(cli: &clap::Command, dir: &Path) -> Result<u8, Error> {
    let write = |name: String, page: Vec<u8>| {
        let path = dir.join(name);
        std::fs::write(&path, page).map_err(|e| Error::io(&path, "write", e))
    };
    write("gemctl.1".into(), main_page(cli)?)?;
    for sub in cli.get_subcommands() {
        let man = clap_mangen::Man::new(sub.clone());
        write(man.get_filename(), render(man)?)?;
    }
    Ok(exit::OK)
}

fn roff_error(e: std::io::Error) -> Error {
    Error::io(Path::new("man page"), "render", e)
}
