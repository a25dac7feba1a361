//! `berqenas template export DIR`: the built-in tenant template as files, the start of
//! an operator's own `--template-dir` (which must hold every applied file, `0001_init.sql`
//! included, and otherwise lives only inside the binary).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use super::Format;
use crate::template::Template;

#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// Write the built-in tenant template's NNNN_name.sql files into DIR (created if
    /// missing), to add your own migrations beside them and pass DIR as --template-dir.
    Export {
        /// The directory to write into.
        dir: PathBuf,
        /// Output format: the files written, one a line, or as a JSON list.
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

pub fn run(cmd: TemplateCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TemplateCommand::Export { dir, output } => {
            let written = export(&Template::builtin(), &dir)?;
            match output {
                Format::Json => {
                    super::output::print_json(&serde_json::json!({ "written": written }))?
                }
                Format::Table => {
                    for path in written {
                        println!("{}", path.display());
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes every migration of `template` into `dir`. A file already there with other
/// content is refused before anything is written, so an edited template is never
/// overwritten half-way; one with the same content is left as it is.
fn export(template: &Template, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    for m in template.migrations() {
        let path = dir.join(&m.name);
        match std::fs::read_to_string(&path) {
            Ok(existing) if existing == m.sql => {}
            Ok(_) => anyhow::bail!(
                "{} already exists with other content; nothing was written (export into an empty directory)",
                path.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    for m in template.migrations() {
        let path = dir.join(&m.name);
        std::fs::write(&path, &m.sql).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
