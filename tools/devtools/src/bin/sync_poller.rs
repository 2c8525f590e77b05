//! The local stand-in for Lambda's SQS event source mapping (a dev tool, not deployed): N
//! workers each take up to ten messages from the sync queue, hand them to the sync worker's
//! handler as the SQS event Lambda would deliver, then delete the handled messages and make
//! the failures visible again. With `--until-empty` it stops once the queue is empty and
//! finishes the open fan-out runs; it prints what it handled.
//!
//! `SYNC_QUEUE_URL`, the secret and the bank URLs come from the environment as for the
//! functions (`TOKEN_ENDPOINT_URL` unset: the institutions on `--local-api`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use shared::AppState;
use shared::banks::{BankGateway, GatewayConfig};
use shared::queue::SyncQueue;
use shared::secrets::SecretNeeds;
use shared::sync::SyncOptions;

#[derive(Parser)]
#[command(
    name = "sync-poller",
    about = "Feed the sync queue's messages to the sync worker"
)]
struct Cli {
    /// Workers polling at once (the event source mapping's concurrency).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Stop when the queue is empty, instead of polling for ever.
    #[arg(long)]
    until_empty: bool,
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    local_api: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    shared::logging::init();
    let cli = Cli::parse();
    let queue = SyncQueue::from_env()
        .await
        .ok_or("SYNC_QUEUE_URL is not set")?;
    let state = AppState::from_env(SecretNeeds::Connect).await?;
    let gateway = match std::env::var_os("TOKEN_ENDPOINT_URL") {
        Some(_) => GatewayConfig::from_env()?,
        None => GatewayConfig::single_host(&cli.local_api, Duration::from_secs(5)),
    };
    let gateway = Arc::new(BankGateway::new(gateway)?);
    let options = Arc::new(SyncOptions::from_env()?);
    let max_receive_count = sync_products::max_receive_count_from_env()?;
    let (handled, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..cli.workers.max(1) {
        let (state, gateway, options, queue) = (
            state.clone(),
            gateway.clone(),
            options.clone(),
            queue.clone(),
        );
        let (handled, failed) = (handled.clone(), failed.clone());
        let until_empty = cli.until_empty;
        workers.push(tokio::spawn(async move {
            loop {
                // Long polling: an empty answer after the wait means the queue is empty.
                let wait = if until_empty { 1 } else { 10 };
                let (n, f) = sync_products::poll_once(
                    &state,
                    &gateway,
                    &options,
                    &queue,
                    max_receive_count,
                    wait,
                )
                .await?;
                handled.fetch_add(n, Ordering::Relaxed);
                failed.fetch_add(f, Ordering::Relaxed);
                if n == 0 && until_empty {
                    return Ok::<_, shared::AppError>(());
                }
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    let finished = shared::fanout::finish_open_runs(&state).await?;
    let seconds = started.elapsed().as_secs_f64();
    let handled = handled.load(Ordering::Relaxed);
    println!(
        "sync-poller: {handled} messages ({} failed) with {} workers in {seconds:.2} s \
         ({:.1} messages/s); {finished} runs finished",
        failed.load(Ordering::Relaxed),
        cli.workers.max(1),
        handled as f64 / seconds.max(0.001)
    );
    Ok(())
}
