//! `provisioner`: the thin binary; parses arguments and calls the library.

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "provisioner", version, about = "Reconciles TOML stacks against AWS")]
struct Cli {
    /// Colour in output: auto (a terminal and no NO_COLOR), always or never.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    color: Color,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Check a stack file completely, without calling AWS; exit 1 on any problem.
    Validate {
        /// The stack file.
        #[arg(default_value = "stacks/prod.toml")]
        stack: PathBuf,
        /// Set a variable, overriding the file's default (repeatable).
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
    },
    /// Print the JSON Schema of stack files (for editors).
    Schema,
    /// Print the reference of every resource kind (Markdown).
    Docs,
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("`{s}` is not NAME=VALUE"))?;
    if k.is_empty() {
        return Err("the variable name is empty".into());
    }
    Ok((k.to_owned(), v.to_owned()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let color = match cli.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal(),
    };
    match cli.command {
        Cmd::Validate { stack, vars } => {
            let file = stack.display().to_string();
            let src = match std::fs::read_to_string(&stack) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("provisioner: cannot read {file}: {e}");
                    return ExitCode::FAILURE;
                }
            };
            // Environment first, then --var: the command line wins.
            let mut all: BTreeMap<String, String> = std::env::vars()
                .filter_map(|(k, v)| k.strip_prefix("PROVISIONER_VAR_").map(|n| (n.to_owned(), v)))
                .collect();
            all.extend(vars);
            match provisioner::stack::load(&file, &src, &all) {
                Ok(s) => {
                    println!(
                        "{file}: stack `{}` in {}: {} resources, no problems",
                        s.name,
                        s.region,
                        s.resources.len()
                    );
                    ExitCode::SUCCESS
                }
                Err(d) => {
                    eprint!("{}", provisioner::diag::render(&file, &src, &d.items, color));
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Schema => {
            println!("{}", serde_json::to_string_pretty(&provisioner::docs::json_schema()).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Cmd::Docs => {
            print!("{}", provisioner::docs::markdown());
            ExitCode::SUCCESS
        }
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "provisioner", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    }
}
