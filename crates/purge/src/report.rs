//! The run's figures for Prometheus, for operators who alert on metrics rather than logs:
//! pushed to a Pushgateway (the usual home of batch-job metrics on Kubernetes) and/or written
//! to a node-exporter textfile. Counts and times only, no account ids as labels.
//!
//! A run writes `last_success_timestamp` or `last_failure_timestamp`, never both, and the
//! other must survive it, or the alert on "no success for two days" loses its series after
//! the first failure: the push is a POST (the Pushgateway replaces only the series it names)
//! and the textfile carries the other timestamp over from its previous version.

use crate::config::Cli;
use crate::run::{Outcome, Summary};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use std::fmt::Write;
use std::time::Duration;

const JOB: &str = "callers-purge";
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);
const LAST_SUCCESS: &str = "callers_purge_last_success_timestamp_seconds";
const LAST_FAILURE: &str = "callers_purge_last_failure_timestamp_seconds";

pub async fn publish(cli: &Cli, summary: &Summary) {
    if cli.pushgateway_url.is_none() && cli.metrics_textfile.is_none() {
        return;
    }
    let text = prometheus_text(summary);
    if let Some(path) = &cli.metrics_textfile {
        let previous = std::fs::read_to_string(path).unwrap_or_default();
        let text = carry_over(&previous, text.clone());
        let tmp = path.with_extension("tmp");
        let written = std::fs::write(&tmp, &text).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the metrics textfile");
        }
    }
    if let Some(url) = &cli.pushgateway_url {
        match tokio::time::timeout(PUSH_TIMEOUT, push(url, text)).await {
            Ok(Ok(())) => tracing::info!("metrics pushed to the pushgateway"),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot push metrics"),
            Err(_) => tracing::warn!("pushing metrics timed out"),
        }
    }
}

fn prometheus_text(s: &Summary) -> String {
    let mut t = String::new();
    let mut gauge = |name: &str, help: &str, value: f64| {
        let _ = writeln!(
            t,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    };
    let end = s.end_time.timestamp() as f64;
    gauge(
        "callers_purge_last_run_timestamp_seconds",
        "When the last run ended.",
        end,
    );
    match s.outcome {
        _ if s.dry_run => {}
        Outcome::Succeeded => gauge(LAST_SUCCESS, "When the last successful run ended.", end),
        Outcome::Failed | Outcome::Interrupted => gauge(
            LAST_FAILURE,
            "When the last failed or interrupted run ended.",
            end,
        ),
        Outcome::Skipped => {}
    }
    gauge(
        "callers_purge_duration_seconds",
        "How long the last run took.",
        s.elapsed_secs,
    );
    gauge(
        "callers_purge_deleted_contacts",
        "Contacts the last run deleted.",
        s.deleted as f64,
    );
    gauge(
        "callers_purge_batches",
        "Batches of the last run.",
        s.batches as f64,
    );
    for (done, n) in &s.housekept {
        gauge(
            &format!("callers_purge_{done}"),
            "Rows the last run's housekeeping chore of this name worked on.",
            *n as f64,
        );
    }
    let _ = writeln!(
        t,
        "# HELP callers_purge_outcome The last run's outcome (1 for the one that happened).\n\
         # TYPE callers_purge_outcome gauge"
    );
    for (name, o) in [
        ("succeeded", Outcome::Succeeded),
        ("skipped", Outcome::Skipped),
        ("interrupted", Outcome::Interrupted),
        ("failed", Outcome::Failed),
    ] {
        let v = u8::from(s.outcome == o);
        let _ = writeln!(t, "callers_purge_outcome{{outcome=\"{name}\"}} {v}");
    }
    t
}

/// `text` plus the success and failure timestamps of `previous` that `text` does not set.
fn carry_over(previous: &str, mut text: String) -> String {
    for name in [LAST_SUCCESS, LAST_FAILURE] {
        if text.contains(&format!("\n{name} ")) || text.starts_with(&format!("{name} ")) {
            continue;
        }
        let family = previous
            .lines()
            .filter(|l| {
                l.strip_prefix("# HELP ")
                    .or_else(|| l.strip_prefix("# TYPE "))
                    .unwrap_or(l)
                    .split_whitespace()
                    .next()
                    == Some(name)
            })
            .collect::<Vec<_>>();
        if family.iter().any(|l| !l.starts_with('#')) {
            for l in family {
                let _ = writeln!(text, "{l}");
            }
        }
    }
    text
}

/// The group's URL: `<base>/metrics/job/callers-purge`, or `base` itself when it names the
/// job's group already (with grouping labels such as the namespace).
fn group_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.contains(&format!("/metrics/job/{JOB}")) {
        base.to_owned()
    } else {
        format!("{base}/metrics/job/{JOB}")
    }
}

/// `POST <url>/metrics/job/callers-purge`: replaces the job's series of the names pushed and
/// keeps the others (the timestamp this run did not write).
async fn push(base: &str, text: String) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let uri: hyper::Uri = group_url(base).parse()?;
    let host = uri
        .host()
        .ok_or("pushgateway url without a host")?
        .to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::post(uri.path())
        .header(hyper::header::HOST, format!("{host}:{port}"))
        .header(hyper::header::CONTENT_TYPE, "text/plain; version=0.0.4")
        .body(Full::new(Bytes::from(text)))?;
    let res = sender.send_request(req).await?;
    let status = res.status();
    let _ = res.into_body().collect().await;
    if !status.is_success() {
        return Err(format!("pushgateway answered {status}").into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The summary of a run that ended with `outcome`.
    fn summary(outcome: Outcome) -> Summary {
        let cli = crate::config::Cli::try_parse_checked([
            "callers-purge",
            "--database-url",
            "postgres://x@127.0.0.1/db",
        ])
        .unwrap();
        let mut s = crate::run::Summary::for_tests(&cli.settings());
        s.outcome = outcome;
        s
    }

    #[test]
    fn the_text_names_one_outcome_and_no_accounts() {
        let mut s = summary(Outcome::Succeeded);
        s.deleted = 7;
        s.deleted_by_account.insert("acme".into(), 7);
        let t = prometheus_text(&s);
        assert!(t.contains("callers_purge_deleted_contacts 7"));
        assert!(t.contains("callers_purge_outcome{outcome=\"succeeded\"} 1"));
        assert!(t.contains("callers_purge_outcome{outcome=\"failed\"} 0"));
        assert!(t.contains("callers_purge_last_success_timestamp_seconds"));
        assert!(!t.contains("callers_purge_last_failure_timestamp_seconds"));
        assert!(!t.contains("acme"));
    }

    #[test]
    fn a_group_url_is_kept_and_a_base_url_gets_the_job() {
        assert_eq!(
            group_url("http://pg:9091/"),
            "http://pg:9091/metrics/job/callers-purge"
        );
        assert_eq!(
            group_url("http://pg:9091/metrics/job/callers-purge/namespace/prod"),
            "http://pg:9091/metrics/job/callers-purge/namespace/prod"
        );
    }

    #[test]
    fn the_textfile_keeps_the_timestamp_a_run_did_not_write() {
        let mut s = summary(Outcome::Succeeded);
        let succeeded = prometheus_text(&s);
        s.outcome = Outcome::Failed;
        let failed = carry_over(&succeeded, prometheus_text(&s));
        let success_line = |t: &str| {
            t.lines()
                .find(|l| l.starts_with(LAST_SUCCESS))
                .map(str::to_owned)
        };
        assert!(success_line(&succeeded).is_some());
        assert_eq!(success_line(&failed), success_line(&succeeded));
        assert!(failed.contains(&format!("\n{LAST_FAILURE} ")), "{failed}");
        assert_eq!(failed.matches(&format!("# TYPE {LAST_SUCCESS}")).count(), 1);
        s.outcome = Outcome::Succeeded;
        let again = carry_over(&failed, prometheus_text(&s));
        assert_eq!(again.matches(&format!("\n{LAST_SUCCESS} ")).count(), 1);
        assert!(again.contains(&format!("\n{LAST_FAILURE} ")), "{again}");
    }
}
