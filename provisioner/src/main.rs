//! `provisioner`: the thin binary; parses arguments and calls the library.

mod cmd;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use cmd::Aws;
use provisioner::stack::Unset;
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
        #[command(flatten)]
        target: Target,
    },
    /// Show what apply would change: exit 0 when nothing, 2 when there are changes, 1 on error.
    Plan {
        #[command(flatten)]
        target: Target,
        /// The plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make AWS match the stack. Refused while a pinned image was never verified against its
    /// registry (`provisioner pin --write` records it).
    Apply {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        run: RunArgs,
        /// Apply with pins no `pin --write` verified (or set PROVISIONER_ACCEPT_UNVERIFIED_PINS=1):
        /// the operator accepts them as they are.
        #[arg(long)]
        accept_unverified_pins: bool,
        /// Make security changes that broaden access (marked [broadening] in the plan) without
        /// asking again: `--yes` alone stops before them. Or PROVISIONER_APPROVE_BROADENING=1.
        #[arg(long)]
        approve_broadening: bool,
    },
    /// Delete everything the stack owns. Refused, with nothing deleted, while a resource is
    /// protected from deletion (a table's or user pool's `deletion_protection`).
    Destroy {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        run: RunArgs,
        /// Delete everything but the protected resources and what they need.
        #[arg(long)]
        exclude_protected: bool,
    },
    /// Print the ids and outputs of what the stack owns.
    Outputs {
        #[command(flatten)]
        target: Target,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// The monthly cost of the stack as declared, per resource and part, from the price snapshot
    /// and the stack's [usage]; no AWS call.
    Cost {
        #[command(flatten)]
        target: Target,
        /// As JSON.
        #[arg(long)]
        json: bool,
        /// Also write the FinOps dashboard of this breakdown into this directory (to look at it
        /// before an apply publishes it).
        #[arg(long, value_name = "DIR")]
        site: Option<std::path::PathBuf>,
        /// The dashboard's page: index.html and the files beside it.
        #[arg(long, value_name = "DIR", default_value = "assets/finops/site", requires = "site")]
        page: std::path::PathBuf,
        /// Libraries the page loads (repeat for more).
        #[arg(
            long,
            value_name = "FILE",
            default_value = "assets/finops/node_modules/chart.js/dist/chart.umd.min.js",
            requires = "site"
        )]
        library: Vec<std::path::PathBuf>,
    },
    /// Remove the stack's lock, whoever holds it (after a run was killed).
    ForceUnlock {
        #[command(flatten)]
        target: Target,
    },
    /// Check the pinned third-party images against their registries (exit 1 when one moved or
    /// cannot be read), or with --write, pin each to the digest its tag has now.
    Pin {
        /// The pins file.
        #[arg(default_value = "assets/pins.toml")]
        file: PathBuf,
        /// Write the registries' digests into the file (comments kept).
        #[arg(long)]
        write: bool,
    },
    /// Print the JSON Schema of stack files (for editors).
    Schema,
    /// Print the reference of every resource kind (Markdown).
    Docs,
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, clap::Args)]
struct Target {
    /// The stack file.
    #[arg(default_value = "stacks/prod.toml")]
    stack: PathBuf,
    /// Set a variable, overriding the file's default (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    vars: Vec<(String, String)>,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
    /// How many resources are worked on at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=256))]
    parallelism: u16,
    /// Seconds one resource may take, retries and waits included.
    #[arg(long, default_value_t = 900)]
    resource_timeout: u64,
}

/// Reads and checks a stack file; problems are printed. `unset`: what a variable without a
/// default becomes when not given (refused, except where only prices are computed).
fn load(target: &Target, color: bool, unset: provisioner::stack::Unset) -> Option<provisioner::stack::Stack> {
    let file = target.stack.display().to_string();
    let src = match std::fs::read_to_string(&target.stack) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("provisioner: cannot read {file}: {e}");
            return None;
        }
    };
    // Environment first, then --var: the command line wins.
    let mut all: BTreeMap<String, String> =
        std::env::vars().filter_map(|(k, v)| k.strip_prefix("PROVISIONER_VAR_").map(|n| (n.to_owned(), v))).collect();
    all.extend(target.vars.iter().cloned());
    match provisioner::load_with(&file, &src, &all, unset) {
        Ok(s) => Some(s),
        Err(d) => {
            eprint!("{}", provisioner::diag::render(&file, &src, &d.items, color));
            None
        }
    }
}

impl From<&RunArgs> for provisioner::walk::WalkOptions {
    fn from(a: &RunArgs) -> Self {
        Self {
            parallelism: a.parallelism.into(),
            resource_timeout: std::time::Duration::from_secs(a.resource_timeout),
            ..Self::default()
        }
    }
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
    let aws = |target: Target, what: Aws| -> ExitCode {
        let Some(mut stack) = load(&target, color, Unset::Refuse) else { return ExitCode::FAILURE };
        // Before anything is built or asked of AWS.
        let never = provisioner::image::pin::unverified(&stack.variables);
        if matches!(what, Aws::Apply { accept_pins: false, .. }) && !never.is_empty() {
            eprintln!(
                "provisioner: refused, nothing was changed: these pinned images were never verified against their \
                 registries: {}.\nRun `provisioner pin --write` (it records each verification), or pass \
                 --accept-unverified-pins to apply them as they are.",
                never.join(", ")
            );
            return ExitCode::FAILURE;
        }
        // What a plan compares needs the derived fields (images are built here); destroying
        // and reading outputs do not.
        if matches!(what, Aws::Plan { .. } | Aws::Apply { destroy: false, .. }) {
            if let Err(e) = provisioner::engine::derive(&mut stack) {
                eprintln!("provisioner: {e}");
                return ExitCode::FAILURE;
            }
        }
        let rt = match tokio::runtime::Runtime::new() {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("provisioner: cannot start the runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        ExitCode::from(rt.block_on(cmd::run(stack, what, color)))
    };
    match cli.command {
        Cmd::Plan { target, json } => aws(target, Aws::Plan { json }),
        Cmd::Apply { target, run, accept_unverified_pins, approve_broadening } => {
            let set = |v: &str| std::env::var(v).is_ok_and(|v| v == "1" || v == "true");
            let accept_pins = accept_unverified_pins || set("PROVISIONER_ACCEPT_UNVERIFIED_PINS");
            let approve_broadening = approve_broadening || set("PROVISIONER_APPROVE_BROADENING");
            let opts = (&run).into();
            aws(
                target,
                Aws::Apply {
                    destroy: false,
                    yes: run.yes,
                    keep_protected: false,
                    accept_pins,
                    approve_broadening,
                    opts,
                },
            )
        }
        Cmd::Destroy { target, run, exclude_protected } => aws(
            target,
            Aws::Apply {
                destroy: true,
                yes: run.yes,
                keep_protected: exclude_protected,
                accept_pins: true,
                approve_broadening: true,
                opts: (&run).into(),
            },
        ),
        Cmd::Outputs { target, json } => aws(target, Aws::Outputs { json }),
        Cmd::ForceUnlock { target } => aws(target, Aws::ForceUnlock),
        Cmd::Validate { target } => match load(&target, color, Unset::Refuse) {
            Some(s) => {
                println!(
                    "{}: stack `{}` in {}: {} resources, no problems",
                    s.file,
                    s.name,
                    s.region,
                    s.resources.len()
                );
                ExitCode::SUCCESS
            }
            None => ExitCode::FAILURE,
        },
        Cmd::Pin { file, write } => pin(&file, write),
        // The bill does not depend on an address or an e-mail: their examples stand in.
        Cmd::Cost { target, json, site, page, library } => match load(&target, color, Unset::Example) {
            Some(s) => {
                let b = provisioner::cost::of_stack(&s);
                if let Some(out) = site {
                    use provisioner::cost::site;
                    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                    let written = site::assemble(&page, &library, &s.name).and_then(|p| {
                        site::write(&p, &out, &site::data(&s.name, &b, &[site::Estimate::of(&b, &now)], &now))
                    });
                    if let Err(e) = written {
                        eprintln!("provisioner: the FinOps site: {e}");
                        return ExitCode::FAILURE;
                    }
                }
                if json {
                    println!("{}", serde_json::to_string_pretty(&b).unwrap_or_default());
                } else {
                    print!("{}", provisioner::cost::render(&b, &s.name, &s.region));
                }
                ExitCode::SUCCESS
            }
            None => ExitCode::FAILURE,
        },
        Cmd::Schema => {
            emit(&format!("{}\n", serde_json::to_string_pretty(&provisioner::docs::json_schema()).unwrap_or_default()))
        }
        Cmd::Docs => emit(&provisioner::docs::markdown()),
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "provisioner", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    }
}

/// `pin`: one line per image; exit 0 when every pin holds (or was written), 1 otherwise.
fn pin(file: &std::path::Path, write: bool) -> ExitCode {
    use provisioner::image::pin::{pin_file, Outcome};
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("provisioner: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // For a registry that wants a login (a private mirror); never printed.
    let basic = std::env::var("PROVISIONER_PIN_AUTH").ok();
    let results = match rt.block_on(pin_file(file, write, basic.as_deref())) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("provisioner: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (mut ok, mut moved) = (true, false);
    for (name, outcome) in &results {
        match outcome {
            Outcome::Unchanged => println!("{name}: pinned digest is the tag's"),
            Outcome::Changed { was, now } => {
                ok &= write;
                moved = true;
                let was = was.as_deref().unwrap_or("no digest");
                let verb = if write { "now pinned to" } else { "the tag is now" };
                println!("{name}: {verb} {now} (was {was})");
            }
            Outcome::Failed(e) => {
                ok = false;
                println!("{name}: cannot check: {e}");
            }
        }
    }
    if results.is_empty() {
        eprintln!("provisioner: {} has no NAME_image entries", file.display());
        return ExitCode::FAILURE;
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        if moved && !write {
            eprintln!("provisioner: run `provisioner pin --write {}` to take the registries' digests", file.display());
        }
        ExitCode::FAILURE
    }
}

/// Writes a command's whole output: a reader that stopped reading (`provisioner docs | head`)
/// ends it quietly, as it ends `cat`.
fn emit(text: &str) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("error: writing the output: {e}");
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}
