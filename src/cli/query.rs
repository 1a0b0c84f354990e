//! `pgroar query`: sends one query to a running server's `POST /query` and prints the answer.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use pgroar::Lsn;
use pgroar::index::Order;
use pgroar::server::{ErrorBody, QueryRequest, QueryResponse, SortRequest};

/// Largest answer read (a page of a million ids is about 8 MiB of JSON).
const MAX_RESPONSE_BYTES: u64 = 64 << 20;

/// Arguments of `pgroar query`.
#[derive(clap::Args, Debug)]
pub struct QueryArgs {
    /// The TOML config file; the server is looked for at its `[http].listen`.
    #[arg(long, short, env = "PGROAR_CONFIG", required_unless_present = "server")]
    config: Option<PathBuf>,
    /// The server's address instead of the config's, e.g. `10.0.0.5:7070` or `http://host:7070`.
    #[arg(long)]
    server: Option<String>,
    /// A filter, e.g. `nsfwLevel eq 1 AND tagIds in [4, 9]`; without one, every live slot.
    #[arg(long)]
    filter: Option<String>,
    /// Sort field with an optional direction: `existedAt:desc`, `existedAt:asc` or `existedAt`
    /// (ascending). Without one, ascending slot ids.
    #[arg(long, value_parser = parse_sort)]
    sort: Option<SortRequest>,
    /// Page size (the server's default is 50; 0 prints only the total).
    #[arg(long)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    #[arg(long)]
    cursor: Option<String>,
    /// Answer only once the index reflects everything committed before this LSN (e.g. 0/16B3748).
    #[arg(long)]
    min_lsn: Option<Lsn>,
    /// Longest wait for `--min-lsn`, in milliseconds (the server's default is 5000).
    #[arg(long)]
    timeout_ms: Option<u64>,
}

fn parse_sort(text: &str) -> Result<SortRequest, String> {
    let (field, order) = match text.rsplit_once(':') {
        Some((field, "asc")) => (field, Order::Asc),
        Some((field, "desc")) => (field, Order::Desc),
        Some((_, other)) => {
            return Err(format!(
                "unknown direction {other:?}: expected FIELD, FIELD:asc or FIELD:desc"
            ));
        }
        None => (text, Order::Asc),
    };
    if field.is_empty() {
        return Err("the sort field is empty".into());
    }
    Ok(SortRequest {
        field: field.to_owned(),
        order,
    })
}

pub fn run(args: QueryArgs) -> anyhow::Result<()> {
    let base = super::server_url(args.config.as_deref(), args.server.as_deref())?;
    let request = QueryRequest {
        filter: args.filter,
        sort: args.sort,
        limit: args.limit,
        cursor: args.cursor,
        min_lsn: args.min_lsn,
        timeout_ms: args.timeout_ms,
    };
    // Allow the server its min_lsn wait plus a generous minute to run the query.
    let wait = Duration::from_millis(args.timeout_ms.unwrap_or(5_000));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_global(Some(wait + Duration::from_secs(60)))
        .build()
        .into();
    let url = format!("{base}/query");
    let mut response = agent.post(&url).send_json(&request).map_err(|e| {
        anyhow::anyhow!("cannot reach the pgroar server at {base} ({e}); is `pgroar run` running?")
    })?;
    let status = response.status();
    let text = response
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_string()
        .with_context(|| format!("reading the answer of {url}"))?;
    let json: serde_json::Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "the server at {base} answered {status} with something other than JSON: {text:.200}"
        )
    })?;
    // Typed where possible, so the fields print in the server's order.
    let pretty = if status.is_success() {
        serde_json::from_value::<QueryResponse>(json.clone())
            .map(|r| serde_json::to_string_pretty(&r))
    } else {
        serde_json::from_value::<ErrorBody>(json.clone()).map(|r| serde_json::to_string_pretty(&r))
    }
    .unwrap_or_else(|_| serde_json::to_string_pretty(&json))?;
    if status.is_success() {
        println!("{pretty}");
        return Ok(());
    }
    eprintln!("{pretty}");
    match serde_json::from_value::<ErrorBody>(json) {
        Ok(body) => bail!("the server answered {status}: {}", body.error),
        Err(_) => bail!("the server answered {status}"),
    }
}
