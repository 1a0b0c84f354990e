//! `pgroar status`: a running server's `GET /status`, printed for a person (or as JSON). The
//! counters are printed from the same table `/status` and `/metrics` are generated from.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use pgroar::server::StatusReport;
use pgroar::status::{COUNTERS, Group};

/// Arguments of `pgroar status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The TOML config file; the server is looked for at its `[http].listen`.
    #[arg(long, short, env = "PGROAR_CONFIG", required_unless_present = "server")]
    config: Option<PathBuf>,
    /// The server's address instead of the config's, e.g. `10.0.0.5:7070`.
    #[arg(long)]
    server: Option<String>,
    /// Print the server's JSON as it is.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &StatusArgs) -> anyhow::Result<()> {
    let base = super::server_url(args.config.as_deref(), args.server.as_deref())?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let text = agent
        .get(format!("{base}/status"))
        .call()
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the pgroar server at {base} ({e}); is `pgroar run` running?"
            )
        })?
        .body_mut()
        .read_to_string()
        .context("reading /status")?;
    if args.json {
        println!("{text}");
        return Ok(());
    }
    let report: StatusReport = serde_json::from_str(&text)
        .with_context(|| format!("the server at {base} sent a status this build cannot read"))?;
    print!("{}", render(&report));
    Ok(())
}

/// The report as aligned lines: where the pipeline is, then every counter of the table.
fn render(r: &StatusReport) -> String {
    let mut out = String::new();
    let l = &r.lsn;
    let secs = |s: Option<f64>| s.map_or_else(|| "unknown".to_string(), |s| format!("{s:.1} s"));
    let _ = writeln!(out, "{:<28} {}", "phase", r.phase);
    if r.role != pgroar::status::Role::Single {
        let _ = writeln!(
            out,
            "{:<28} {} (leader epoch {})",
            "role",
            r.role.as_str(),
            r.leader_epoch
        );
    }
    let _ = writeln!(
        out,
        "{:<28} {} / {}",
        "slot / publication", r.slot, r.publication
    );
    for (stage, lsn) in [
        ("received", l.received),
        ("durable", l.durable),
        ("applied", l.applied),
        ("checkpointed", l.checkpointed),
        ("server", l.server),
        ("forwarded", l.forwarded),
        ("published", l.published),
    ] {
        let _ = writeln!(out, "{:<28} {lsn}", format!("lsn {stage}"));
    }
    let _ = writeln!(out, "{:<28} {} bytes", "lag", r.lag_bytes.applied);
    let _ = writeln!(out, "{:<28} {}", "lag (time)", secs(r.lag_seconds));
    let _ = writeln!(out, "{:<28} {:.0}", "ops/s", r.ops_per_second);
    let _ = writeln!(out, "{:<28} {}", "alive slots", r.alive_slots);
    if let Some(rss) = r.rss_bytes {
        let _ = writeln!(
            out,
            "{:<28} {:.1} MiB",
            "memory (RSS)",
            rss as f64 / 1048576.0
        );
    }
    match &r.slot_state {
        Some(s) => {
            let _ = writeln!(
                out,
                "{:<28} {}, wal_status {}, retains {:.1} MiB{} (read {:.0} s ago)",
                "slot on the server",
                if s.active { "active" } else { "inactive" },
                s.wal_status,
                s.retained_bytes as f64 / 1048576.0,
                s.safe_wal_bytes
                    .map(|b| format!(", {:.1} MiB before it is at risk", b as f64 / 1048576.0))
                    .unwrap_or_default(),
                s.age_seconds
            );
        }
        None => {
            let _ = writeln!(out, "{:<28} not read yet", "slot on the server");
        }
    }
    let _ = writeln!(out, "{:<28} {:.0} s", "uptime", r.uptime_seconds);
    for (title, group) in [("totals", Group::Total), ("bad data", Group::BadData)] {
        let _ = writeln!(out, "{title}:");
        for spec in COUNTERS.iter().filter(|s| s.group == group) {
            let v = r.counts.get(spec.counter);
            let _ = writeln!(out, "  {:<26} {v:<12} {}", spec.key, spec.help);
        }
    }
    if let Some(e) = &r.last_error {
        let _ = writeln!(
            out,
            "last error ({:.0} s ago): {}",
            e.age_seconds, e.message
        );
    }
    out
}
