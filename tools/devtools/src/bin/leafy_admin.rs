//! Operator CLI: create the secret, rotate its signing key, create indexes, load sample data,
//! show the institution token Leafy Bank holds for a consent.
//! Talks to Secrets Manager through the standard AWS SDK environment, so the same commands work
//! against AWS and against the local emulator.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use std::time::Duration;

use mongodb::bson::oid::ObjectId;
use shared::banks::{BankGateway, GatewayConfig};
use shared::config::Settings;
use shared::db::Db;
use shared::provision::{get_secret, new_secret, put_secret, rotate_signing_key};
use shared::secrets::SecretStore;
use shared::secrets::{AppSecret, SecretNeeds};
use shared::{AppError, AppState};

#[derive(Parser)]
#[command(name = "leafy-admin", about = "Leafy Bank Open Finance operator tasks")]
struct Cli {
    /// Name or ARN of the service's secret.
    #[arg(
        long,
        env = "SECRET_ID",
        global = true,
        default_value = "leafy-bank/open-finance"
    )]
    secret_id: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the secret with a new ES256 signing key and one OAuth client.
    InitSecret {
        #[arg(long, env = "MONGODB_URI")]
        mongodb_uri: String,
        #[arg(long, default_value = "open_finance")]
        open_finance_db: String,
        #[arg(long, default_value = "leafy_bank")]
        leafy_bank_db: String,
        #[arg(long, default_value = "leafy-bank-backend")]
        client_id: String,
        #[arg(long, value_delimiter = ',', default_value = "openfinance,sync")]
        scopes: Vec<String>,
        /// Where to write the client's credentials as shell variables CLIENT_ID and
        /// CLIENT_SECRET (mode 0600); printed to stdout otherwise.
        #[arg(long)]
        credentials_file: Option<PathBuf>,
        /// Leave an existing, complete secret as it is.
        #[arg(long)]
        if_missing: bool,
        /// Replace an existing, complete secret: new keys and clients, so every issued token
        /// and every stored consent credential stops working.
        #[arg(long, conflicts_with = "if_missing")]
        force: bool,
    },
    /// Replace the signing key; the old public key keeps verifying tokens it signed.
    RotateSigningKey,
    /// Create the indexes of the `open_finance` database and give its per-customer documents
    /// the top-level owner field where they lack it (data written before it existed).
    SetupDb {
        /// Also index `leafy_bank.accounts` by owner and add the owner field there (the core
        /// bank's collection: only where this service may write it, as in the local stack).
        #[arg(long)]
        leafy_bank: bool,
    },
    /// Replace the reference exchange rates with a JSON file's
    /// (`{"base": "USD", "asOf": "2026-11-30T16:00:00Z", "source": "…", "rates": {"EUR": 1.05}}`:
    /// units of the base per unit of each currency). Warm functions use it within
    /// EXCHANGE_RATES_REFRESH_SECONDS.
    SetExchangeRates {
        #[arg(long)]
        file: PathBuf,
    },
    /// Print the access token Leafy Bank would present to the institution for a consent now,
    /// refreshed through the institution's token endpoint when it is about to expire (as a
    /// sync does). For reproducing a bank call by hand and for the API fuzzer's bank calls.
    ConsentAccessToken {
        #[arg(long)]
        consent: String,
        /// Where the institutions' token endpoints answer when TOKEN_ENDPOINT_URL and the bank
        /// base URLs are not set: a local API server.
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        local_api: String,
    },
    /// Create the sync queue and its dead-letter queue (as the template does on AWS) on the
    /// SQS endpoint of the environment (`AWS_ENDPOINT_URL_SQS` for a local emulator); prints
    /// the queue's URL, the value of SYNC_QUEUE_URL.
    CreateSyncQueue {
        #[arg(long, default_value = "leafy-bank-sync")]
        name: String,
        #[arg(long, default_value_t = 3)]
        max_receive_count: u32,
        #[arg(long, default_value_t = 30)]
        visibility_timeout_seconds: u32,
    },
    /// Create indexes and load the Extended JSON sample data (idempotent).
    Seed {
        #[arg(long, default_value = "sample_data")]
        dir: PathBuf,
    },
}

#[tokio::main]
async fn main() {
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("leafy-admin: {e}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<(), AppError> {
    let sm = aws_sdk_secretsmanager::Client::new(&aws_config_from_env().await);
    match cli.command {
        Command::InitSecret {
            mongodb_uri,
            open_finance_db,
            leafy_bank_db,
            client_id,
            scopes,
            credentials_file,
            if_missing,
            force,
        } => {
            if let Some(existing) = get_secret(&sm, &cli.secret_id).await? {
                // A complete secret holds the data key of every stored consent credential:
                // replaced only when asked to.
                match AppSecret::parse(&existing.to_string(), SecretNeeds::All) {
                    Ok(_) if if_missing => {
                        println!("secret '{}' exists; left unchanged", cli.secret_id);
                        return Ok(());
                    }
                    Ok(_) if !force => {
                        return Err(AppError::Config(format!(
                            "secret '{}' exists and is complete; replacing it would invalidate \
                             every issued token and stored consent credential (rotate the \
                             signing key with rotate-signing-key, or pass --force)",
                            cli.secret_id
                        )));
                    }
                    Ok(_) => println!("secret '{}' replaced (--force)", cli.secret_id),
                    Err(e) => println!(
                        "secret '{}' is incomplete ({e}); replacing it",
                        cli.secret_id
                    ),
                }
            }
            let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
            let new = new_secret(
                &mongodb_uri,
                &open_finance_db,
                &leafy_bank_db,
                &client_id,
                &scopes,
            )?;
            put_secret(&sm, &cli.secret_id, &new.document).await?;
            // Both values are URL-safe, so the file can be sourced by a shell as it is.
            let credentials = format!(
                "CLIENT_ID={}\nCLIENT_SECRET={}\n",
                new.client_id, new.client_secret
            );
            match credentials_file {
                Some(path) => {
                    write_private(&path, &credentials)?;
                    println!(
                        "secret '{}' written; client credentials in {}",
                        cli.secret_id,
                        path.display()
                    );
                }
                None => print!("{credentials}"),
            }
        }
        Command::RotateSigningKey => {
            let current = get_secret(&sm, &cli.secret_id).await?.ok_or_else(|| {
                AppError::Config(format!("secret '{}' does not exist", cli.secret_id))
            })?;
            let rotated = rotate_signing_key(&current)?;
            put_secret(&sm, &cli.secret_id, &rotated).await?;
            println!(
                "signing key rotated; new kid {}",
                rotated["signing_key"]["kid"]
            );
        }
        Command::SetupDb { leafy_bank } => {
            let db = connect(&sm, &cli.secret_id).await?;
            db.ensure_indexes().await?;
            if leafy_bank {
                db.ensure_leafy_bank_indexes().await?;
            }
            let updated = db.backfill_owner(leafy_bank).await?;
            println!("indexes in place; owner field added to {updated} documents");
        }
        Command::SetExchangeRates { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| AppError::Config(format!("cannot read {}: {e}", file.display())))?;
            let table = shared::fx::RateTable::from_operator_json(&text)?;
            shared::fx::replace(&connect(&sm, &cli.secret_id).await?, &table).await?;
            println!(
                "exchange rates replaced: base {}, {} currencies, as of {}",
                table.base,
                table.rates.len(),
                table.as_of
            );
        }
        Command::ConsentAccessToken { consent, local_api } => {
            let consent_id = ObjectId::parse_str(&consent)
                .map_err(|_| AppError::BadRequest(format!("'{consent}' is not a consent id")))?;
            let mut settings = Settings::from_env()?;
            settings.secret_id = cli.secret_id.clone();
            let secrets = SecretStore::from_env(
                settings.secret_id.clone(),
                settings.secret_ttl,
                SecretNeeds::All,
            )
            .await;
            let state = AppState::build(settings, secrets).await?;
            let gateway = match std::env::var_os("TOKEN_ENDPOINT_URL") {
                Some(_) => GatewayConfig::from_env()?,
                None => GatewayConfig::single_host(&local_api, Duration::from_secs(5)),
            };
            let consent = shared::consents::get_any(&state.db, consent_id)
                .await?
                .ok_or_else(|| AppError::NotFound(format!("consent {consent} does not exist")))?;
            let token =
                shared::connect::access_token(&state, &BankGateway::new(gateway)?, &consent)
                    .await?;
            println!("{token}");
        }
        Command::CreateSyncQueue {
            name,
            max_receive_count,
            visibility_timeout_seconds,
        } => {
            let client = aws_sdk_sqs::Client::new(&aws_config_from_env().await);
            let (queue, _dead_letters) = shared::queue::SyncQueue::create_with_dead_letter_queue(
                client,
                &name,
                max_receive_count,
                visibility_timeout_seconds,
            )
            .await?;
            println!("{}", queue.url);
        }
        Command::Seed { dir } => {
            let report = shared::seed::seed_dir(&connect(&sm, &cli.secret_id).await?, &dir).await?;
            for (collection, count) in report {
                println!("{collection}: {count} documents");
            }
        }
    }
    Ok(())
}

async fn aws_config_from_env() -> aws_config::SdkConfig {
    aws_config::load_from_env().await
}

async fn connect(sm: &aws_sdk_secretsmanager::Client, secret_id: &str) -> Result<Db, AppError> {
    let document = get_secret(sm, secret_id)
        .await?
        .ok_or_else(|| AppError::Config(format!("secret '{secret_id}' does not exist")))?;
    let secret = AppSecret::parse(&document.to_string(), SecretNeeds::Verify)?;
    Db::connect(
        &secret.mongodb_uri,
        &secret.open_finance_db,
        &secret.leafy_bank_db,
    )
    .await
}

fn write_private(path: &std::path::Path, text: &str) -> Result<(), AppError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| AppError::Config(format!("cannot write {}: {e}", path.display())))?;
    file.write_all(text.as_bytes())
        .map_err(|e| AppError::Config(format!("cannot write {}: {e}", path.display())))
}
