//! `pgroar demo`: a throwaway PostgreSQL with the image-feed dataset, bootstrapped and streamed
//! under a live writer, with a view that refreshes in place and a running check against SQL.
//! Everything lives in temporary directories and disappears on Ctrl-C (or after `--seconds`).

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use pgroar::bootstrap::{self, BootstrapOptions};
use pgroar::cluster::{Cluster, ClusterOptions};
use pgroar::config::Config;
use pgroar::dataset::{self, DatasetOptions, Identity, WriteKind, Writer, WriterStats};
use pgroar::oracle::Oracle;
use pgroar::server::{QueryResponse, StatusReport};
use pgroar::source::ConnInfo;
use pgroar::status::Progress;
use tokio::sync::watch;

use super::check::live::{Verdict, check_server};
use super::serve::shutdown_signal;

/// Options of `pgroar demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Images in the generated feed.
    #[arg(long, default_value_t = 200_000)]
    rows: u32,
    /// Writer transactions per second.
    #[arg(long, default_value_t = 50.0)]
    write_rate: f64,
    /// Stop by itself after this many seconds of streaming (default: run until Ctrl-C).
    #[arg(long)]
    seconds: Option<u64>,
    /// Seconds between two checks of the index against SQL.
    #[arg(long, default_value_t = 10)]
    check_every: u64,
}

/// The three example queries the view runs: (label, request body).
const QUERIES: [(&str, &str); 3] = [
    (
        "safe images, newest first",
        r#"{"filter":"nsfwLevel eq 1 AND type eq image","sort":{"field":"existedAt","order":"desc"},"limit":5}"#,
    ),
    (
        "popular tags in public posts",
        r#"{"filter":"tagIds in [1, 2, 3] AND availability eq Public","sort":{"field":"publishedAt","order":"desc"},"limit":5}"#,
    ),
    (
        "SDXL, not blocked",
        r#"{"filter":"baseModels eq 'SDXL 1.0' AND NOT blocked eq true","sort":{"field":"id","order":"desc"},"limit":5}"#,
    ),
];

pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let runtime = super::runtime()?;
    runtime.block_on(demo(args))
}

async fn demo(args: &DemoArgs) -> anyhow::Result<()> {
    eprintln!("starting a throwaway PostgreSQL (it is removed when the demo ends)…");
    let cluster = tokio::task::spawn_blocking(|| Cluster::start(ClusterOptions::fast()))
        .await?
        .context(
            "cannot start PostgreSQL: `./dev demo` installs the server package, or install \
             `postgresql` (or set PGROAR_PG_BIN to its bin directory)",
        )?;
    let db = cluster.create_database("feed")?;
    let url = cluster.url(&db);
    let conn = ConnInfo::parse(&url)?;
    let dataset = DatasetOptions {
        images: args.rows,
        identity: Identity::Default,
        ..DatasetOptions::default()
    };
    super::generate::load_with_bar(&conn, &dataset).await?;
    let dir = tempfile::Builder::new().prefix("pgroar-demo-").tempdir()?;
    let addr = free_port()?;
    let config = config(&url, dir.path(), addr)?;
    eprintln!("bootstrapping the index…");
    let progress = Progress::new();
    let reporter = bootstrap::progress::spawn_reporter(progress.clone(), Duration::from_secs(5));
    let summary = bootstrap::bootstrap(&config, &BootstrapOptions::default(), &progress).await;
    progress.finish();
    let _ = tokio::task::spawn_blocking(move || reporter.join()).await;
    let summary = summary.context("bootstrap failed")?;
    eprintln!(
        "bootstrapped {} rows in {:.1} s; streaming",
        summary.rows,
        summary.elapsed.as_secs_f64()
    );
    let (stop_tx, stop) = watch::channel(false);
    let server = {
        let (config, mut stop) = (config.clone(), stop.clone());
        tokio::spawn(async move {
            let _ = pgroar::server::run(config, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        })
    };
    let stats = Arc::new(WriterStats::default());
    let writer = Writer::connect(&conn, 7, stats.clone()).await?;
    let writing = tokio::spawn(writer.run(args.write_rate, stop.clone()));
    let base = format!("http://{addr}");
    wait_ready(&base).await?;
    print_header(&base);
    let verdict = Arc::new(Mutex::new(None));
    let checker = tokio::spawn(check_loop(
        config.clone(),
        base.clone(),
        Duration::from_secs(args.check_every.max(1)),
        verdict.clone(),
        stop.clone(),
    ));
    let view = View::new(base.clone(), stats, verdict);
    let until = args.seconds.map(Duration::from_secs);
    tokio::select! {
        () = view.run(until) => {}
        () = shutdown_signal() => {}
    }
    eprintln!("stopping: writer, server, PostgreSQL…");
    let _ = stop_tx.send(true);
    let _ = writing.await;
    let _ = checker.await;
    let _ = server.await;
    drop(cluster);
    eprintln!("demo over; everything it made is removed");
    Ok(())
}

/// A port free on 127.0.0.1 right now.
fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?)
}

/// The image-feed config pointed at the demo's database, directory and port.
fn config(url: &str, dir: &std::path::Path, addr: SocketAddr) -> anyhow::Result<Config> {
    let text = dataset::config_text(url, "pgroar", &dir.join("data"), &addr.to_string());
    Ok(Config::from_toml_str(&text, std::iter::empty())?)
}

/// Waits until the server answers `/readyz` (streaming, the index loaded).
async fn wait_ready(base: &str) -> anyhow::Result<()> {
    let url = format!("{base}/readyz");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let probe = url.clone();
        let ready = tokio::task::spawn_blocking(move || {
            ureq::get(&probe)
                .config()
                .timeout_global(Some(Duration::from_secs(2)))
                .build()
                .call()
                .is_ok()
        })
        .await?;
        if ready {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the server at {base} did not become ready within two minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn print_header(base: &str) {
    let (_, body) = QUERIES[0];
    println!();
    println!("pgroar is serving the image feed at {base}");
    println!("try it:  curl -s {base}/query -d '{body}'");
    println!("status:  curl -s {base}/status    (Ctrl-C ends the demo and removes everything)");
    println!();
}

/// Checks the index against SQL every `every` until `stop`.
async fn check_loop(
    config: Config,
    base: String,
    every: Duration,
    verdict: Arc<Mutex<Option<Verdict>>>,
    mut stop: watch::Receiver<bool>,
) {
    let oracle = Oracle::new(&config);
    loop {
        let v = check_server(&config, &oracle, &base).await;
        *verdict
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(v);
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// The live view.
struct View {
    base: String,
    agent: ureq::Agent,
    stats: Arc<WriterStats>,
    verdict: Arc<Mutex<Option<Verdict>>>,
    terminal: bool,
}

impl View {
    fn new(base: String, stats: Arc<WriterStats>, verdict: Arc<Mutex<Option<Verdict>>>) -> View {
        View {
            base,
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(5)))
                .build()
                .into(),
            stats,
            verdict,
            terminal: std::io::stdout().is_terminal(),
        }
    }

    /// Redraws every second (in place on a terminal; a block every five seconds otherwise)
    /// until `until` has passed, if given.
    async fn run(&self, until: Option<Duration>) {
        let started = Instant::now();
        let mut drawn = 0usize;
        let mut last_counts = self.stats.counts();
        let mut last = Instant::now();
        let mut tick = 0u64;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            tick += 1;
            let counts = self.stats.counts();
            let secs = last.elapsed().as_secs_f64().max(1e-3);
            let rates: Vec<f64> = counts
                .iter()
                .zip(&last_counts)
                .map(|(n, m)| (n - m) as f64 / secs)
                .collect();
            (last_counts, last) = (counts, Instant::now());
            let text = self.frame(&rates).await;
            if self.terminal {
                let mut out = std::io::stdout().lock();
                if drawn > 0 {
                    let _ = write!(out, "\x1b[{drawn}A\x1b[J");
                }
                let _ = write!(out, "{text}");
                let _ = out.flush();
                drawn = text.lines().count();
            } else if tick.is_multiple_of(5) {
                println!("{text}");
            }
            if until.is_some_and(|u| started.elapsed() >= u) {
                if !self.terminal {
                    println!("{text}");
                }
                return;
            }
        }
    }

    async fn frame(&self, rates: &[f64]) -> String {
        let (agent, base) = (self.agent.clone(), self.base.clone());
        let fetched = tokio::task::spawn_blocking(move || fetch(&agent, &base)).await;
        let mut out = String::new();
        let Ok((status, queries)) = fetched else {
            return "the view could not reach the server\n".into();
        };
        match status {
            Some(s) => {
                let _ = writeln!(
                    out,
                    "applied LSN {}   lag {} bytes / {}   {} live images   index {:.0} ops/s   phase {:?}",
                    s.lsn.applied,
                    s.lag_bytes.applied,
                    s.lag_seconds
                        .map_or_else(|| "? ms".into(), |l| format!("{:.0} ms", l * 1000.0)),
                    s.alive_slots,
                    s.ops_per_second,
                    s.phase
                );
            }
            None => out.push_str("status: unavailable\n"),
        }
        let kinds: Vec<String> = WriteKind::ALL
            .iter()
            .zip(rates)
            .filter(|(_, r)| **r > 0.0)
            .map(|(k, r)| format!("{} {r:.0}", k.name()))
            .collect();
        let _ = writeln!(out, "writer, transactions/s: {}", kinds.join(", "));
        for ((label, _), q) in QUERIES.iter().zip(queries) {
            match q {
                Some((ms, r)) => {
                    let _ = writeln!(
                        out,
                        "  {label:<30} {ms:>6.1} ms  {:>7} matches  top {:?}",
                        r.total, r.ids
                    );
                }
                None => {
                    let _ = writeln!(out, "  {label:<30} failed");
                }
            }
        }
        let verdict = self
            .verdict
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let _ = writeln!(
            out,
            "{}",
            verdict.map_or_else(
                || "check: running the first comparison with SQL…".into(),
                |v| v.line()
            )
        );
        out
    }
}

type Queried = (Option<StatusReport>, Vec<Option<(f64, QueryResponse)>>);

/// `/status` and the example queries, with their latency.
fn fetch(agent: &ureq::Agent, base: &str) -> Queried {
    let status = agent
        .get(format!("{base}/status"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_json::<StatusReport>().ok());
    let queries = QUERIES
        .iter()
        .map(|(_, body)| {
            let started = Instant::now();
            let mut r = agent
                .post(format!("{base}/query"))
                .header("content-type", "application/json")
                .send(*body)
                .ok()?;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            Some((ms, r.body_mut().read_json::<QueryResponse>().ok()?))
        })
        .collect();
    (status, queries)
}
