//! The commands that talk to AWS: plan, apply, destroy, outputs, force-unlock. Output, exit
//! codes, confirmation, the lock and Ctrl-C live here; the work is the library's.

use provisioner::engine::{self, Inventory};
use provisioner::error::Class;
use provisioner::lock::{force_unlock, record_regions, regions, Lock};
use provisioner::plan::{render, Action};
use provisioner::stack::Stack;
use provisioner::walk::{Progress, WalkOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub enum Aws {
    Plan {
        json: bool,
    },
    /// `keep_protected`: a destroy leaves what AWS protects from deletion, and what that needs;
    /// `accept_pins`: pinned images no `pin --write` verified are applied anyway;
    /// `approve_broadening`: security changes that widen access need no second question.
    Apply {
        destroy: bool,
        yes: bool,
        keep_protected: bool,
        accept_pins: bool,
        approve_broadening: bool,
        opts: WalkOptions,
    },
    Outputs {
        json: bool,
    },
    ForceUnlock,
}

/// How long a lock lives without renewal (a killed run's lock frees itself after this).
const LOCK_TTL: Duration = Duration::from_secs(15 * 60);

/// Runs one command; returns the exit code.
pub async fn run(stack: Stack, what: Aws, color: bool) -> u8 {
    let (cx, ddb) = engine::connect(&stack).await;
    match what {
        Aws::Plan { json } => {
            let inv = match discover(&cx, &ddb, &stack).await {
                Ok(i) => i,
                Err(e) => return fail(&format!("reading {} from AWS: {e}", stack.name)),
            };
            let plan = engine::plan(&stack, &inv);
            if json {
                println!("{}", serde_json::to_string_pretty(&plan).unwrap_or_default());
            } else {
                print!("{}", render(&plan, color));
            }
            if !plan.refused().is_empty() {
                return refuse(&plan);
            }
            if plan.has_changes() {
                2
            } else {
                0
            }
        }
        Aws::Outputs { json } => match discover(&cx, &ddb, &stack).await {
            Ok(inv) => {
                print_outputs(&stack, &inv, json);
                0
            }
            Err(e) => fail(&format!("reading {} from AWS: {e}", stack.name)),
        },
        Aws::ForceUnlock => match force_unlock(&ddb, &stack.name).await {
            Ok(Some(h)) => {
                println!("Removed the lock of stack {} held by {h}", stack.name);
                0
            }
            Ok(None) => {
                println!("Stack {} was not locked", stack.name);
                0
            }
            Err(e) => fail(&e.to_string()),
        },
        Aws::Apply { destroy, yes, keep_protected, approve_broadening, opts, .. } => {
            // From the start: a Ctrl-C while the lock is taken or AWS is read still ends the run
            // properly (the lock released), not by the signal's default.
            let cancel = CancellationToken::new();
            tokio::spawn(interrupts(cancel.clone()));
            let op = if destroy { "destroy" } else { "apply" };
            let lock = match Lock::acquire(&ddb, &stack.name, op, LOCK_TTL).await {
                Ok(l) => l,
                Err(e) => return fail(&e.to_string()),
            };
            if let Some(at) = lock.interrupted {
                settle(at).await;
            }
            let run = Run { destroy, yes, keep_protected, approve_broadening, opts: &opts, color, cancel };
            let code = apply(&cx, &ddb, stack, run).await;
            if let Err(e) = lock.release().await {
                eprintln!("provisioner: releasing the lock: {e}");
            }
            code
        }
    }
}

/// After an interrupted run, waits until AWS's lists show what it made moments before it was
/// stopped: EC2's describe calls, filtered by tag, lag behind its creates, and a resource they
/// do not show yet would be made a second time (a VPC has no idempotency token and no unique
/// name). `PROVISIONER_SETTLE_SECS` (default 30) is how long AWS may take.
async fn settle(interrupted_at: u64) {
    let settle = settle_secs();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let left = settle.saturating_sub(now.saturating_sub(interrupted_at));
    if left > 0 {
        eprintln!("provisioner: the last run was interrupted; waiting {left} s for AWS's lists to show what it made");
        tokio::time::sleep(Duration::from_secs(left)).await;
    }
}

/// How long AWS's lists may lag behind its creates (`PROVISIONER_SETTLE_SECS`, default 30).
fn settle_secs() -> u64 {
    std::env::var("PROVISIONER_SETTLE_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(30)
}

/// What the stack owns once AWS's lists show everything this run made: EC2's tag-filtered
/// describes lag behind its creates, and a plan run the moment an apply ends would otherwise
/// offer to make again what was just made. Waits at most [`settle_secs`], then reads as it is.
async fn settled(
    cx: &provisioner::provider::Cx,
    ddb: &aws_sdk_dynamodb::Client,
    stack: &Stack,
    made: &[&str],
) -> Result<Inventory, String> {
    let until = Instant::now() + Duration::from_secs(settle_secs());
    loop {
        let inv = discover(cx, ddb, stack).await?;
        if made.iter().all(|a| inv.live.contains_key(*a)) || Instant::now() >= until {
            return Ok(inv);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The regions other than its own that a stack file names.
fn away(stack: &Stack) -> BTreeSet<String> {
    engine::regions(stack).into_iter().filter(|r| *r != stack.region).collect()
}

/// Everything the stack owns, in its regions and in those its regions index names.
async fn discover(
    cx: &provisioner::provider::Cx,
    ddb: &aws_sdk_dynamodb::Client,
    stack: &Stack,
) -> Result<Inventory, String> {
    let also = regions(ddb, &stack.name).await.map_err(|e| e.to_string())?;
    let inv = engine::discover(cx, stack, &also).await.map_err(|e| e.to_string())?;
    for u in &inv.unread {
        eprintln!("provisioner: note: not read (the stack has none; an emulator lacking the API?): {u}");
    }
    Ok(inv)
}

/// Says which changes AWS cannot make in one apply; exit code 1.
fn refuse(plan: &provisioner::plan::Plan) -> u8 {
    eprintln!("provisioner: nothing was changed: AWS cannot make these changes in one apply:");
    for (a, why) in plan.refused() {
        eprintln!("  {a}: {why}");
    }
    1
}

fn fail(msg: &str) -> u8 {
    eprintln!("provisioner: {msg}");
    1
}

/// The stack's `[outputs]` (under `"outputs"` in JSON: no address is one word), then every
/// resource's id and outputs.
fn print_outputs(stack: &Stack, inv: &Inventory, json: bool) {
    let mut out = inv.outputs();
    if json {
        let mine: serde_json::Map<String, serde_json::Value> =
            stack.outputs.iter().map(|o| (o.name.clone(), o.render(&out).into())).collect();
        if let Some(m) = out.as_object_mut() {
            m.insert("outputs".into(), mine.into());
        }
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return;
    }
    print_stack_outputs(stack, &out);
    for (addr, o) in out.as_object().into_iter().flatten() {
        for (k, v) in o.as_object().into_iter().flatten() {
            println!("{addr}.{k} = {}", v.as_str().map_or_else(|| v.to_string(), str::to_owned));
        }
    }
}

fn print_stack_outputs(stack: &Stack, outputs: &serde_json::Value) {
    for o in &stack.outputs {
        println!("{} = {}", o.name, o.render(outputs).unwrap_or_else(|| "(not known yet)".into()));
    }
}

/// How `apply` (or `destroy`) runs: the command line's choices and the interrupt token.
struct Run<'a> {
    destroy: bool,
    yes: bool,
    keep_protected: bool,
    approve_broadening: bool,
    opts: &'a WalkOptions,
    color: bool,
    cancel: CancellationToken,
}

async fn apply(cx: &provisioner::provider::Cx, ddb: &aws_sdk_dynamodb::Client, stack: Stack, run: Run<'_>) -> u8 {
    let Run { destroy, yes, keep_protected, approve_broadening, opts, color, cancel } = run;
    let inv = match discover(cx, ddb, &stack).await {
        Ok(i) => i,
        Err(e) => return fail(&format!("reading {} from AWS: {e}", stack.name)),
    };
    // Destroying is applying a stack that declares nothing.
    let target = if destroy { Stack { resources: vec![], ..stack } } else { stack };
    let mut plan = engine::plan(&target, &inv);
    let protected = engine::protected(&inv, &plan);
    if destroy && keep_protected && !protected.is_empty() {
        let keep: Vec<String> = protected.iter().map(|(a, _)| a.clone()).collect();
        let (rest, kept) = engine::plan_keeping(&target, &inv, &keep);
        plan = rest;
        for a in &kept {
            println!(
                "keeping {a}{}",
                if keep.contains(a) { " (protected)" } else { " (a protected resource needs it)" }
            );
        }
    } else if !protected.is_empty() {
        // Refused before the walk: it would first delete what hangs off them, then fail on them.
        print!("{}", render(&plan, color));
        eprintln!("provisioner: refused, nothing was changed: AWS protects these from deletion:");
        for (a, how) in &protected {
            eprintln!("  {a}: {how}");
        }
        if destroy {
            eprintln!("or run `provisioner destroy --exclude-protected {}` to delete everything else.", target.file);
        }
        return 1;
    }
    print!("{}", render(&plan, color));
    if !plan.refused().is_empty() {
        return refuse(&plan);
    }
    if !plan.has_changes() {
        if !destroy && !target.outputs.is_empty() {
            println!("\nOutputs:");
            print_stack_outputs(&target, &inv.outputs());
        }
        return 0;
    }
    if !yes && !confirm(destroy) {
        eprintln!("provisioner: not confirmed; nothing was changed");
        return 1;
    }
    // A destroy only takes away; an apply that widens access is asked about on its own, `--yes`
    // or not: an unattended run must say so with --approve-broadening.
    let broadening = plan.broadening();
    if !destroy && !broadening.is_empty() && !approve_broadening && !confirm_broadening(broadening.len()) {
        eprintln!(
            "provisioner: nothing was changed: {} security changes above broaden access ([broadening]); review them, \
             then answer `yes` at a terminal or pass --approve-broadening",
            broadening.len()
        );
        return 1;
    }
    if cancel.is_cancelled() {
        eprintln!("provisioner: interrupted before any change; nothing was changed");
        return 1;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let printer = tokio::spawn(progress(rx));
    let started = Instant::now();
    // Before anything is made elsewhere, the regions index names where it will be, so a run
    // killed halfway still finds it; once everything is done, only what the file names is left.
    let target_regions = away(&target);
    let before: BTreeSet<String> = target_regions.union(&inv.elsewhere()).cloned().collect();
    if let Err(e) = record_regions(ddb, &target.name, &before).await {
        return fail(&format!("recording the stack's regions: {e}"));
    }
    let out = engine::apply(cx, &target, &inv, &plan, opts, Some(tx), cancel).await;
    let _ = printer.await;
    let r = &out.report;
    println!();
    if r.ok() && target_regions != before {
        if let Err(e) = record_regions(ddb, &target.name, &target_regions).await {
            eprintln!("provisioner: recording the stack's regions: {e}");
        }
    }
    // What AWS allows only later (Lambda@Edge replicas) does not fail a destroy that did all else.
    let (later, failed): (Vec<_>, Vec<_>) = r.failed.iter().partition(|(_, e)| e.class == Class::Later);
    if destroy && !later.is_empty() && failed.is_empty() {
        println!("Destroy finished after {:.1}s, leaving for later:", started.elapsed().as_secs_f64());
        for (a, e) in &later {
            println!("  left:    {a}: {}", e.brief());
        }
        for a in &r.skipped {
            println!("  left:    {a} (waits for the above)");
        }
        println!("Run `provisioner destroy {}` again later (AWS removes Lambda@Edge replicas within a few hours) to delete them.", target.file);
        return 0;
    }
    if r.ok() {
        let (a, c, d) = plan.summary();
        let verb = if destroy { "Destroy" } else { "Apply" };
        println!(
            "{verb} complete after {:.1}s! Resources: {a} added, {c} changed, {d} destroyed.",
            started.elapsed().as_secs_f64()
        );
        // Where to look now: read back, as `outputs` would show them, once AWS lists all it made
        // (so the next plan is empty).
        let made: Vec<&str> = plan
            .resources
            .iter()
            .filter(|r| matches!(r.action, Action::Create | Action::Replace))
            .map(|r| r.address.as_str())
            .collect();
        let read_back = !made.is_empty() || !target.outputs.is_empty();
        if !destroy && read_back {
            match settled(cx, ddb, &target, &made).await {
                Ok(inv) if !target.outputs.is_empty() => {
                    println!("\nOutputs:");
                    print_stack_outputs(&target, &inv.outputs());
                }
                Ok(_) => {}
                Err(e) => eprintln!("provisioner: reading back what was made: {e}"),
            }
        }
        0
    } else {
        println!(
            "Stopped after {:.1}s: {} steps done, {} failed, {} skipped.",
            started.elapsed().as_secs_f64(),
            r.done.len(),
            r.failed.len(),
            r.skipped.len()
        );
        for (a, e) in &r.failed {
            println!("  failed:  {a}: {e}");
        }
        for a in &r.skipped {
            println!("  skipped: {a}");
        }
        1
    }
}

fn confirm(destroy: bool) -> bool {
    if !std::io::stdin().is_terminal() {
        eprintln!("provisioner: no terminal to confirm on; pass --yes to go ahead");
        return false;
    }
    let what = if destroy { "destroy everything this stack owns" } else { "perform these actions" };
    print!("\nDo you want to {what}? Only 'yes' will be accepted: ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).is_ok() && line.trim() == "yes"
}

fn confirm_broadening(n: usize) -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    print!("\n{n} of these security changes broaden access. Make them? Only 'yes' will be accepted: ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).is_ok() && line.trim() == "yes"
}

/// First Ctrl-C: start nothing new, finish what runs. Second: stop at once.
async fn interrupts(cancel: CancellationToken) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    eprintln!("\nInterrupted: finishing the operations in progress, starting nothing new (Ctrl-C again to stop now)");
    cancel.cancel();
    if tokio::signal::ctrl_c().await.is_ok() {
        eprintln!(
            "\nStopped. The stack lock stays until it expires or `provisioner force-unlock`; rerun apply to converge."
        );
        std::process::exit(130);
    }
}

/// Live progress lines, terraform style, with a reminder every 10 s for long operations.
async fn progress(mut rx: mpsc::UnboundedReceiver<Progress<engine::StepId>>) {
    let mut running: BTreeMap<engine::StepId, (Action, Instant)> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.tick().await;
    let ing = |a: Action| match a {
        Action::Create => "Creating",
        Action::Delete => "Destroying",
        _ => "Modifying",
    };
    loop {
        tokio::select! {
            m = rx.recv() => match m {
                Some(Progress::Started(addr, action)) => {
                    println!("{addr}: {}...", ing(action));
                    running.insert(addr, (action, Instant::now()));
                }
                Some(Progress::Retrying(addr, e)) => println!("{addr}: retrying: {e}"),
                Some(Progress::Finished(addr, res, took)) => {
                    let action = running.remove(&addr).map_or(Action::Update, |r| r.0);
                    let done = match action {
                        Action::Create => "Creation complete",
                        Action::Delete => "Destruction complete",
                        _ => "Modifications complete",
                    };
                    match res {
                        Ok(()) => println!("{addr}: {done} after {:.1}s", took.as_secs_f64()),
                        Err(e) => println!("{addr}: failed after {:.1}s: {e}", took.as_secs_f64()),
                    }
                }
                None => return,
            },
            _ = tick.tick() => {
                for (addr, (action, since)) in &running {
                    println!("{addr}: Still {}... [{}s elapsed]", ing(*action).to_lowercase(), since.elapsed().as_secs());
                }
            }
        }
    }
}
