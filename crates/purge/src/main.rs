//! `callers-purge`: one purge run, wired to flags, logging and signals.
//!
//! Stdout carries exactly one line, the JSON summary of the run (once the flags parsed); logs
//! go to stderr. Exit codes: 0 succeeded or another run holds the lock, 1 failed, 2 invalid
//! flags, 3 interrupted by SIGTERM/SIGINT (the next run continues).

mod config;
mod report;
mod run;

use callers_domain::SystemClock;
use callers_runtime::logging::{self, Output};
use callers_runtime::telemetry;
use clap::error::ErrorKind;
use config::Cli;
use std::process::ExitCode;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

const USAGE_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse_checked(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) => {
            eprintln!("callers-purge: {}", config::usage_error_line(&e));
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let settings = cli.settings();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("callers-purge: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let (traces, traces_error) = match telemetry::Traces::from_env("callers-purge") {
            Ok(t) => (t, None),
            Err(e) => (None, Some(e)),
        };
        // Stderr: stdout carries only the summary.
        logging::init_with_traces(cli.log_format, Output::Stderr, traces.as_ref());
        if let Some(e) = traces_error {
            tracing::warn!(error = e, "traces are not exported");
        }
        let stop = match stop_on_signals() {
            Ok(stop) => stop,
            Err(e) => {
                eprintln!("callers-purge: cannot install signal handlers: {e}");
                return ExitCode::FAILURE;
            }
        };
        let summary = run::run(&settings, &SystemClock, stop).await;
        match serde_json::to_string(&summary) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("callers-purge: cannot write the summary: {e}"),
        }
        if let Some(error) = &summary.error {
            eprintln!("callers-purge: {error}");
        }
        report::publish(&cli, &summary).await;
        if let Some(t) = traces {
            t.shutdown().await;
        }
        ExitCode::from(summary.outcome.exit_code())
    })
}

/// Turns true on SIGTERM (Kubernetes stopping the Job's pod) or SIGINT: the run stops after the
/// batch it is in.
fn stop_on_signals() -> std::io::Result<watch::Receiver<bool>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "stopping after the current batch");
        let _ = tx.send(true);
        // Keep the sender, so the run never mistakes a dropped channel for a signal.
        std::future::pending::<()>().await;
    });
    Ok(rx)
}
