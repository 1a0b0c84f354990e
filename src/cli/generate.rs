//! `pgroar generate`: load the image-feed dataset into a throwaway database, and/or keep
//! changing it at a given rate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use pgroar::dataset::{
    self, DatasetOptions, Identity, LoadProgress, WriteKind, Writer, WriterStats,
};
use pgroar::source::ConnInfo;

use super::serve::shutdown_signal;

/// Options of `pgroar generate`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// The database to fill (libpq URI or key=value string). It must not have the dataset's
    /// tables yet: use a throwaway database.
    #[arg(long, env = "PGROAR_POSTGRES_URL")]
    url: String,
    /// Number of images (the other tables scale with it).
    #[arg(long, default_value_t = 200_000)]
    rows: u32,
    /// Seed of every random choice: the same seed gives the same rows.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Replica identity of the tables: default or full.
    #[arg(long, default_value = "default")]
    identity: Identity,
    /// The publication to create over the six tables ("" for none).
    #[arg(long, default_value = "pgroar")]
    publication: String,
    /// Skip the load; only run the writer over tables loaded before.
    #[arg(long)]
    no_load: bool,
    /// After loading, change the data at this many transactions per second until Ctrl-C (0: do
    /// not write).
    #[arg(long, default_value_t = 0.0)]
    write_rate: f64,
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let conn = ConnInfo::parse(&args.url).context("--url is not a valid connection string")?;
    let runtime = super::runtime()?;
    runtime.block_on(async {
        if !args.no_load {
            load(&conn, &args).await?;
        }
        if args.write_rate > 0.0 {
            write(&conn, &args).await?;
        }
        Ok(())
    })
}

async fn load(conn: &ConnInfo, args: &GenerateArgs) -> anyhow::Result<()> {
    let options = DatasetOptions {
        images: args.rows,
        seed: args.seed,
        identity: args.identity,
        publication: args.publication.clone(),
    };
    load_with_bar(conn, &options).await
}

/// Loads the dataset with a progress bar; reports the sizes and time when done.
pub(super) async fn load_with_bar(conn: &ConnInfo, options: &DatasetOptions) -> anyhow::Result<()> {
    let images = options.images;
    let progress = Arc::new(LoadProgress::default());
    let bar = ProgressBar::new(1000).with_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {percent:>3}% {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message("loading");
    let started = Instant::now();
    let task = {
        let (conn, progress, options) = (conn.clone(), progress.clone(), options.clone());
        tokio::spawn(async move { dataset::generate(&conn, &options, progress).await })
    };
    while !task.is_finished() {
        bar.set_position((progress.fraction(images) * 1000.0) as u64);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sizes = task.await.context("the load panicked")??;
    bar.finish_and_clear();
    eprintln!(
        "loaded {} images ({} users, {} tags, {} model versions) with publication {:?} in {:.1} s",
        sizes.images,
        sizes.users,
        sizes.tags,
        sizes.model_versions,
        options.publication,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn write(conn: &ConnInfo, args: &GenerateArgs) -> anyhow::Result<()> {
    let stats = Arc::new(WriterStats::default());
    let writer = Writer::connect(conn, args.seed, stats.clone()).await?;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(writer.run(args.write_rate, stop));
    eprintln!(
        "writing about {} transactions per second; Ctrl-C stops",
        args.write_rate
    );
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    task.await.context("the writer panicked")??;
    let counts = stats.counts();
    let parts: Vec<String> = WriteKind::ALL
        .iter()
        .zip(counts)
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{} {n}", k.name()))
        .collect();
    eprintln!("wrote {} transactions: {}", stats.total(), parts.join(", "));
    Ok(())
}
