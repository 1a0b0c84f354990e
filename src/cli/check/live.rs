//! The live comparison: a SQL snapshot at a temporary slot's consistent point, the index pinned
//! at the same LSN (over HTTP from a running server, or in this process from the data
//! directory), then the oracle's expected state against the index's, range by range.

use std::future::Future;
use std::ops::RangeInclusive;
use std::pin::Pin;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use pgroar::Lsn;
use pgroar::config::Config;
use pgroar::index::{IndexState, Snapshot};
use pgroar::oracle::{CheckError, CheckReport, Oracle, SqlSnapshot, compare};
use pgroar::pipeline::{PinError, Pipeline, PipelineOptions};
use pgroar::server::ErrorBody;
use pgroar::server::check::{PinAnswer, PinRequest};
use pgroar::source::ConnInfo;
use pgroar::translate::Translator;

use super::CheckArgs;

/// Fresh SQL snapshots tried when the index is already past the first one's LSN.
const ATTEMPTS: usize = 5;
/// How long the index may take to reach the snapshot's LSN.
const PIN_PATIENCE: Duration = Duration::from_secs(60);

/// Where the index side comes from.
enum Side {
    Server { base: String, agent: ureq::Agent },
    Local(Pipeline),
}

pub fn run(config: Config, args: &CheckArgs) -> anyhow::Result<()> {
    let runtime = super::super::runtime()?;
    runtime.block_on(check(config, args))
}

async fn check(config: Config, args: &CheckArgs) -> anyhow::Result<()> {
    let conn = ConnInfo::parse(&config.postgres.url).context("postgres.url")?;
    let oracle = Oracle::new(&config);
    for s in oracle.skipped() {
        eprintln!("not compared: {} ({})", s.field, s.why);
    }
    let side = side(&config, args).await?;
    let result = pinned_check(&config, &conn, &oracle, &side, args.chunk, true).await;
    match side {
        Side::Server { base, agent } => {
            let _ = agent.delete(format!("{base}/check/pin")).call();
        }
        Side::Local(pipeline) => {
            pipeline.stop();
            pipeline
                .join()
                .await
                .context("stopping the in-process pipeline")?;
        }
    }
    let report = result?;
    if report.diff.is_empty() {
        println!(
            "the index equals SQL at LSN {}: {} live slots, every field compared",
            report.lsn, report.slots
        );
        return Ok(());
    }
    print!("{}", report.diff);
    bail!(
        "the index differs from SQL at LSN {} in {} places (above)",
        report.lsn,
        report.diff.len()
    )
}

/// A running server if one answers (or `--server` names one), else the data directory.
/// The HTTP agent of the check's server calls, sending `[http].token` when the config has one.
fn agent(config: &Config) -> ureq::Agent {
    let mut builder = ureq::Agent::config_builder()
        .timeout_global(Some(PIN_PATIENCE + Duration::from_secs(30)))
        .http_status_as_error(false);
    if let Some(token) = config.http.token.clone() {
        let bearer = format!("Bearer {}", token.expose());
        builder = builder.middleware(
            move |mut request: ureq::http::Request<ureq::SendBody>,
                  next: ureq::middleware::MiddlewareNext| {
                if let Ok(value) = bearer.parse() {
                    request
                        .headers_mut()
                        .insert(ureq::http::header::AUTHORIZATION, value);
                }
                next.handle(request)
            },
        );
    }
    builder.build().into()
}

async fn side(config: &Config, args: &CheckArgs) -> anyhow::Result<Side> {
    let base = super::super::server_url(Some(&args.config), args.server.as_deref())?;
    let agent = agent(config);
    let probe = {
        let (agent, url) = (agent.clone(), format!("{base}/healthz"));
        tokio::task::spawn_blocking(move || agent.get(url).call().is_ok()).await?
    };
    if probe {
        eprintln!("comparing the index of the server at {base}");
        return Ok(Side::Server { base, agent });
    }
    if args.server.is_some() {
        bail!("no pgroar server answers at {base}");
    }
    let data_dir = &config.storage.data_dir;
    if !matches!(
        pgroar::bootstrap::marker::state(data_dir)?,
        pgroar::bootstrap::DataDir::Complete(_)
    ) {
        bail!(
            "no pgroar server answers at {base}, and {} holds no complete index: start the \
             server (`pgroar run`), or bootstrap first",
            data_dir.display()
        );
    }
    eprintln!(
        "no server at {base}: bringing the index in {} up to date in this process",
        data_dir.display()
    );
    let translator = Translator::new(config)?;
    let options = PipelineOptions::from_config(config);
    let pipeline = Pipeline::start(config.clone(), translator, options)
        .await
        .context("starting the pipeline on the data directory (is a server using it?)")?;
    Ok(Side::Local(pipeline))
}

type StateFuture = Pin<Box<dyn Future<Output = Result<IndexState, CheckError>> + Send>>;

/// [`pinned_check`] without a progress bar, at the default range size.
#[cfg(feature = "demo")]
async fn pinned_check_quiet(
    config: &Config,
    conn: &ConnInfo,
    oracle: &Oracle,
    side: &Side,
) -> anyhow::Result<CheckReport> {
    pinned_check(
        config,
        conn,
        oracle,
        side,
        pgroar::oracle::CHUNK_SLOTS,
        false,
    )
    .await
}

async fn pinned_check(
    config: &Config,
    conn: &ConnInfo,
    oracle: &Oracle,
    side: &Side,
    chunk: u32,
    show: bool,
) -> anyhow::Result<CheckReport> {
    for attempt in 1..=ATTEMPTS {
        // Hold the index first: it cannot pass the snapshot's LSN while the snapshot is taken.
        hold(side).await?;
        let sql = SqlSnapshot::take(conn, &config.postgres.publication).await?;
        let lsn = sql.lsn();
        let local = match pin(side, &sql).await {
            Ok(local) => local,
            Err(PinFailure::Passed) if attempt < ATTEMPTS => continue,
            Err(PinFailure::Passed) => bail!("the index kept moving past every SQL snapshot"),
            Err(PinFailure::Other(e)) => return Err(e),
        };
        let max = oracle.max_slot(sql.client()).await?;
        let bar = if show {
            ProgressBar::new(u64::from(max) + 1)
        } else {
            ProgressBar::hidden()
        };
        let bar = bar.with_style(
            ProgressStyle::with_template("comparing [{bar:40}] {pos}/{len} slots {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        let fetch = |slots: RangeInclusive<u32>| -> StateFuture {
            bar.set_position(u64::from((*slots.end()).min(max)) + 1);
            match (&local, side) {
                (Some(snapshot), _) => {
                    let snapshot = snapshot.clone();
                    Box::pin(async move { Ok(snapshot.state_in(slots)) })
                }
                (None, Side::Server { base, agent }) => {
                    let (agent, url) = (
                        agent.clone(),
                        format!(
                            "{base}/check/state?from={}&to={}",
                            slots.start(),
                            slots.end()
                        ),
                    );
                    Box::pin(async move {
                        tokio::task::spawn_blocking(move || fetch_state(&agent, &url, lsn))
                            .await
                            .map_err(|e| CheckError::Index {
                                lsn,
                                detail: e.to_string(),
                            })?
                    })
                }
                (None, Side::Local(_)) => Box::pin(async move {
                    Err(CheckError::Index {
                        lsn,
                        detail: "no pinned snapshot".into(),
                    })
                }),
            }
        };
        let report = compare(oracle, &sql, max, chunk, fetch).await?;
        bar.finish_and_clear();
        return Ok(report);
    }
    bail!("the index kept moving past every SQL snapshot")
}

/// Stops the index from advancing until the pin names its LSN (see `pipeline::pin`).
async fn hold(side: &Side) -> anyhow::Result<()> {
    match side {
        Side::Local(pipeline) => pipeline.pins().hold().map_err(Into::into),
        Side::Server { base, agent } => {
            let (agent, url) = (agent.clone(), format!("{base}/check/hold"));
            let mut response = tokio::task::spawn_blocking(move || agent.post(&url).send_empty())
                .await?
                .context("POST /check/hold")?;
            if response.status().is_success() {
                return Ok(());
            }
            let text = response.body_mut().read_to_string().unwrap_or_default();
            bail!("the server refused to hold its index: {text}")
        }
    }
}

enum PinFailure {
    Passed,
    Other(anyhow::Error),
}

/// Pins the index at the snapshot's LSN, nudging the stream meanwhile; the in-process snapshot,
/// or `None` when the server keeps it.
async fn pin(side: &Side, sql: &SqlSnapshot) -> Result<Option<Snapshot>, PinFailure> {
    let lsn = sql.lsn();
    let answer: Pin<Box<dyn Future<Output = Result<Option<Snapshot>, PinFailure>> + Send>> =
        match side {
            Side::Local(pipeline) => {
                let rx = pipeline.pins().request(lsn);
                Box::pin(async move {
                    let got = tokio::task::spawn_blocking(move || rx.recv_timeout(PIN_PATIENCE))
                        .await
                        .map_err(|e| PinFailure::Other(e.into()))?;
                    match got {
                        Ok(Ok(s)) => Ok(Some(s.settled())),
                        Ok(Err(PinError::Passed { .. })) => Err(PinFailure::Passed),
                        Ok(Err(e)) => Err(PinFailure::Other(e.into())),
                        Err(_) => Err(PinFailure::Other(anyhow::anyhow!(
                            "the index did not reach LSN {lsn} within {} s",
                            PIN_PATIENCE.as_secs()
                        ))),
                    }
                })
            }
            Side::Server { base, agent } => {
                let (agent, url) = (agent.clone(), format!("{base}/check/pin"));
                Box::pin(async move {
                    tokio::task::spawn_blocking(move || post_pin(&agent, &url, lsn))
                        .await
                        .map_err(|e| PinFailure::Other(e.into()))?
                        .map(|_| None)
                })
            }
        };
    let mut answer = answer;
    let started = Instant::now();
    loop {
        tokio::select! {
            r = &mut answer => return r,
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                if started.elapsed() < PIN_PATIENCE {
                    let _ = sql.nudge().await;
                }
            }
        }
    }
}

fn post_pin(agent: &ureq::Agent, url: &str, lsn: Lsn) -> Result<Lsn, PinFailure> {
    let mut response = agent
        .post(url)
        .send_json(PinRequest { lsn })
        .map_err(|e| PinFailure::Other(anyhow::anyhow!("POST {url}: {e}")))?;
    let status = response.status();
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| PinFailure::Other(e.into()))?;
    if status.is_success() {
        let answer: PinAnswer =
            serde_json::from_str(&text).map_err(|e| PinFailure::Other(e.into()))?;
        return Ok(answer.applied_lsn);
    }
    let err: Option<ErrorBody> = serde_json::from_str(&text).ok();
    match err {
        Some(e) if e.code == "passed" => Err(PinFailure::Passed),
        Some(e) => Err(PinFailure::Other(anyhow::anyhow!(
            "{} ({})", e.error, e.code
        ))),
        None => Err(PinFailure::Other(anyhow::anyhow!("{status}: {text}"))),
    }
}

fn fetch_state(agent: &ureq::Agent, url: &str, lsn: Lsn) -> Result<IndexState, CheckError> {
    let err = |detail: String| CheckError::Index { lsn, detail };
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| err(format!("GET {url}: {e}")))?;
    let status = response.status();
    let text = response
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_string()
        .map_err(|e| err(e.to_string()))?;
    if !status.is_success() {
        return Err(err(format!("GET {url}: {status}: {text}")));
    }
    serde_json::from_str(&text).map_err(|e| err(format!("reading {url}: {e}")))
}

/// The outcome of one check, for the demo's view.
#[cfg(feature = "demo")]
#[derive(Clone, Debug)]
pub(in crate::cli) enum Verdict {
    /// The index equals SQL.
    Equal { lsn: Lsn, slots: u64, at: Instant },
    /// It differs.
    Differs {
        lsn: Lsn,
        places: usize,
        first: String,
        at: Instant,
    },
    /// The check could not run.
    Failed(String),
}

#[cfg(feature = "demo")]
impl Verdict {
    /// One line for a display.
    pub(in crate::cli) fn line(&self) -> String {
        match self {
            Verdict::Equal { lsn, slots, at } => format!(
                "check: the index equals SQL at LSN {lsn} ({slots} live images, {} s ago)",
                at.elapsed().as_secs()
            ),
            Verdict::Differs {
                lsn,
                places,
                first,
                at,
            } => format!(
                "check: the index DIFFERS from SQL at LSN {lsn} in {places} places ({} s ago): {first}",
                at.elapsed().as_secs()
            ),
            Verdict::Failed(e) => format!("check: could not run: {e}"),
        }
    }
}

/// One check of the server at `base` against SQL.
#[cfg(feature = "demo")]
pub(in crate::cli) async fn check_server(config: &Config, oracle: &Oracle, base: &str) -> Verdict {
    let agent = agent(config);
    let side = Side::Server {
        base: base.to_string(),
        agent: agent.clone(),
    };
    let result = match ConnInfo::parse(&config.postgres.url) {
        Ok(conn) => pinned_check_quiet(config, &conn, oracle, &side).await,
        Err(e) => Err(e.into()),
    };
    let _ = tokio::task::spawn_blocking(move || {
        agent.delete(format!("{}/check/pin", base_of(&side))).call()
    })
    .await;
    match result {
        Ok(r) if r.diff.is_empty() => Verdict::Equal {
            lsn: r.lsn,
            slots: r.slots,
            at: Instant::now(),
        },
        Ok(r) => Verdict::Differs {
            lsn: r.lsn,
            places: r.diff.len(),
            first: r
                .diff
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
            at: Instant::now(),
        },
        Err(e) => Verdict::Failed(format!("{e:#}")),
    }
}

#[cfg(feature = "demo")]
fn base_of(side: &Side) -> String {
    match side {
        Side::Server { base, .. } => base.clone(),
        Side::Local(_) => String::new(),
    }
}
