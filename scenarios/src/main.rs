//! `tearline`: run the crash matrix over the scenario catalogue, and reproduce
//! any failure from the one line it printed.

use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use tearline::catalogue::{self, Scenario};
use tearline::sqlite_atomic_commit::{self, Case, MatrixOptions, MatrixReport};

/// Exit code when every scenario met its expectation.
const EXIT_PASS: u8 = 0;
/// Exit code when a scenario broke an invariant it must keep (or kept one it must break).
const EXIT_VIOLATION: u8 = 1;
/// Exit code when the harness itself failed (bad arguments, I/O).
const EXIT_HARNESS_ERROR: u8 = 2;

#[derive(Parser)]
#[command(
    name = "tearline",
    version,
    about = "Deterministic crash-matrix testing for storage code"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the scenarios and what each must show.
    List,
    /// Run the crash matrix over the catalogue (or the named scenarios).
    Run {
        /// Scenarios to run (default: all).
        scenarios: Vec<String>,
        /// The run seed: everything random derives from it.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Workload size multiplier (transactions per scenario = 6 x scale), 1 to 20.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=20))]
        scale: u32,
        /// Check every n-th syscall only (1 = every one).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        stride: u64,
        /// Sampled post-crash states per point and model, where not enumerable, 1 to 64.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=64))]
        samples: u64,
        /// Violations to print per scenario, with their repro lines.
        #[arg(long, default_value_t = 5)]
        show: usize,
    },
    /// Replay one case from the line a failure printed, with its trace.
    Repro {
        /// `<scenario>:<seed>:<syscall>:<fault>[:<model>:<pick>]`, optionally
        /// followed by `@<scale>` if the run used another scale than 2.
        line: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::List => list(),
        Command::Run {
            scenarios,
            seed,
            scale,
            stride,
            samples,
            show,
        } => run(&scenarios, seed, scale, stride, samples, show),
        Command::Repro { line } => repro(&line),
    };
    ExitCode::from(code)
}

fn list() -> u8 {
    for scenario in catalogue::catalogue(1) {
        println!("{}\n    {}", scenario.name, scenario.description);
        if scenario.expect.findings.is_empty() {
            println!("    must pass every invariant");
        }
        for finding in &scenario.expect.findings {
            let invariants: Vec<&str> = finding.invariants.iter().map(|i| i.name()).collect();
            println!("    must reproduce ({}): {}", invariants.join(", "), finding.summary);
        }
        println!();
    }
    EXIT_PASS
}

fn run(names: &[String], seed: u64, scale: u32, stride: u64, samples: u64, show: usize) -> u8 {
    let all = catalogue::catalogue(scale);
    let chosen: Vec<Scenario> = if names.is_empty() {
        all
    } else {
        let mut chosen = Vec::new();
        for name in names {
            match all.iter().find(|s| &s.name == name) {
                Some(s) => chosen.push(s.clone()),
                None => {
                    eprintln!("error: no scenario named {name:?} (see `tearline list`)");
                    return EXIT_HARNESS_ERROR;
                }
            }
        }
        chosen
    };
    println!("SEED={seed} scale={scale} stride={stride} samples={samples}");
    let options = MatrixOptions {
        seed,
        samples_per_point: samples,
        stride,
        ..MatrixOptions::default()
    };
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut exit = EXIT_PASS;
    for scenario in &chosen {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{msg:28} [{bar:40}] {pos}/{len} points {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(scenario.name.clone());
        let scenario_start = Instant::now();
        let result = sqlite_atomic_commit::run_matrix(&scenario.workload, &options, &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        });
        bar.finish();
        let report = match result {
            Ok(report) => report,
            Err(e) => {
                eprintln!("error: {}: the harness failed: {e}", scenario.name);
                return EXIT_HARNESS_ERROR;
            }
        };
        let verdict = scenario.expect.judge(&report);
        if let Err(why) = &verdict {
            exit = EXIT_VIOLATION;
            eprintln!("FAIL {}: {why}", scenario.name);
            for failure in report.failures.iter().take(show) {
                eprintln!(
                    "  {} broke at {}: {}\n    reproduce: tearline repro {}",
                    failure.violation.invariant,
                    failure.op.map_or("the end".to_string(), |op| op.to_string()),
                    failure.violation.evidence,
                    repro_line(scenario, seed, scale, &failure.case)
                );
            }
        }
        rows.push((scenario.clone(), report, verdict, scenario_start.elapsed()));
    }
    print_summary(&rows, seed, scale);
    println!("total wall time {:.1} s", started.elapsed().as_secs_f64());
    exit
}

fn repro_line(scenario: &Scenario, seed: u64, scale: u32, case: &Case) -> String {
    let suffix = if scale == 2 { String::new() } else { format!("@{scale}") };
    format!("{}:{seed}:{case}{suffix}", scenario.name)
}

fn print_summary(rows: &[(Scenario, MatrixReport, Result<(), String>, std::time::Duration)], seed: u64, scale: u32) {
    println!();
    println!(
        "{:<28} {:>9} {:>8} {:>8} {:>9} {:>8} {:>10}  verdict",
        "scenario", "syscalls", "points", "states", "failures", "time s", "states/s"
    );
    for (scenario, report, verdict, time) in rows {
        let secs = time.as_secs_f64();
        let rate = if secs > 0.0 {
            report.states_checked as f64 / secs
        } else {
            0.0
        };
        let verdict = match verdict {
            Ok(()) if scenario.expect.findings.is_empty() => "pass".to_string(),
            Ok(()) => format!("pass ({} known findings reproduced)", scenario.expect.findings.len()),
            Err(_) => "FAIL".to_string(),
        };
        println!(
            "{:<28} {:>9} {:>8} {:>8} {:>9} {:>8.1} {:>10.0}  {verdict}",
            scenario.name,
            report.workload_syscalls,
            report.crash_points,
            report.states_checked,
            report.failures.len(),
            secs,
            rate
        );
    }
    for (scenario, report, verdict, _) in rows {
        if verdict.is_err() {
            continue;
        }
        for finding in &scenario.expect.findings {
            let instances: Vec<_> = report.failures.iter().filter(|f| finding.explains(f)).collect();
            // A power cut is the plainest example of a finding, where there is one.
            let example = instances
                .iter()
                .find(|f| f.case.fault == tearline_sim_fs::Fault::PowerCut)
                .or(instances.first());
            if let Some(example) = example {
                println!(
                    "\n{} reproduced a known finding at {} cases: {}\n  e.g. {} broke: {}\n  reproduce: tearline repro {}",
                    scenario.name,
                    instances.len(),
                    finding.summary,
                    example.violation.invariant,
                    example.violation.evidence,
                    repro_line(scenario, seed, scale, &example.case)
                );
            }
        }
    }
}

fn repro(line: &str) -> u8 {
    let (body, scale) = match line.rsplit_once('@') {
        Some((body, scale)) => match scale.parse::<u32>() {
            Ok(scale) => (body, scale),
            Err(_) => {
                eprintln!("error: bad scale in {line:?}");
                return EXIT_HARNESS_ERROR;
            }
        },
        None => (line, 2),
    };
    let mut parts = body.splitn(3, ':');
    let (Some(name), Some(seed), Some(case)) = (parts.next(), parts.next(), parts.next()) else {
        eprintln!("error: expected <scenario>:<seed>:<syscall>:<fault>[:<model>:<pick>], got {line:?}");
        return EXIT_HARNESS_ERROR;
    };
    let Some(scenario) = catalogue::find(name, scale) else {
        eprintln!("error: no scenario named {name:?} (see `tearline list`)");
        return EXIT_HARNESS_ERROR;
    };
    let (Ok(seed), Some(case)) = (seed.parse::<u64>(), Case::parse(case)) else {
        eprintln!("error: cannot parse the seed or the case in {line:?}");
        return EXIT_HARNESS_ERROR;
    };
    println!("SEED={seed} scenario={name} case={case}");
    let outcome = match sqlite_atomic_commit::replay(&scenario.workload, seed, &case) {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("error: the harness failed: {e}");
            return EXIT_HARNESS_ERROR;
        }
    };
    println!("\ntrace around syscall {} (boot 0), then the reboot:", case.syscall);
    for entry in outcome.trace.around(case.syscall, 8).filter(|e| e.boot == 0) {
        let marker = if entry.index == case.syscall { ">>" } else { "  " };
        println!("{marker} {entry}");
    }
    for entry in outcome
        .trace
        .entries()
        .iter()
        .filter(|e| e.op == tearline_sim_fs::SyscallKind::Reboot)
    {
        println!("   {entry}");
    }
    let recovery = outcome.trace.entries().iter().filter(|e| e.boot > 0).count();
    println!("   ... {recovery} syscalls of recovery and checking after the reboot");
    match outcome.verdict {
        Ok(()) => {
            println!("\nresult: every invariant held");
            EXIT_PASS
        }
        Err(violation) => {
            println!(
                "\nresult: {} broke\nevidence: {}",
                violation.invariant, violation.evidence
            );
            EXIT_VIOLATION
        }
    }
}
