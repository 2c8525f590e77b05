//! Which unexpired access tokens have been revoked, known in this process so that verifying a
//! JWT costs no database round trip (DESIGN §9). The list is read once, then only what was
//! revoked since, at most every `REVOCATION_REFRESH_SECONDS`: a revocation (RFC 7009, a
//! revoked consent, a replayed refresh token) is refused everywhere within that interval. A
//! revoked consent is refused at once anyway: the institutions check the consent itself.
//!
//! The same periodic read records when each access token was last used: the tokens seen since
//! the previous read are written then (one `update_one` each, by `_id`), their `TokenDates.LastUseDate` set
//! to the latest use in that window (at most the refresh interval after their own last use).
//! Uses in a process's last window before it is frozen or ends are not recorded.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use mongodb::bson::{DateTime, Document, doc};
use tokio::sync::Mutex;

use super::tokens::ACCESS_TOKEN;
use crate::db::Db;
use crate::error::AppError;

/// Revocations are read back this far before the last read, so one written by a process
/// whose clock runs behind ours is not missed.
const CLOCK_SKEW: Duration = Duration::from_secs(30);

pub struct RevocationList {
    refresh_every: Duration,
    known: Mutex<Known>,
}

#[derive(Default)]
struct Known {
    revoked: HashSet<String>,
    /// When the list was last read (monotonic), and from which revocation date on.
    read_at: Option<Instant>,
    since: Option<DateTime>,
    /// Access tokens used since the last read, and when the latest of those uses was.
    used: HashSet<String>,
    last_use: Option<DateTime>,
}

impl RevocationList {
    /// `refresh_every` zero reads the database on every check (tests that revoke and expect
    /// the very next request refused).
    pub fn new(refresh_every: Duration) -> Self {
        RevocationList {
            refresh_every,
            known: Mutex::new(Known::default()),
        }
    }

    /// Whether the access token `jti` has been revoked, as of the last read of the list; if
    /// not, its use is noted (and written at the next read).
    pub async fn is_revoked(&self, db: &Db, jti: &str) -> Result<bool, AppError> {
        let mut known = self.known.lock().await;
        let due = known
            .read_at
            .is_none_or(|at| at.elapsed() >= self.refresh_every);
        if due {
            let now = DateTime::now();
            let mut filter = doc! {
                "TokenType": ACCESS_TOKEN,
                "Revoked": true,
                "TokenDates.ExpiryDate": {"$gt": now},
            };
            if let Some(since) = known.since {
                filter.insert("TokenDates.RevocationDate", doc! {"$gte": since});
            }
            let newly: Vec<Document> = db
                .tokens()
                .find(filter)
                .projection(doc! {"_id": 1})
                .await?
                .try_collect()
                .await?;
            known.revoked.extend(
                newly
                    .iter()
                    .filter_map(|d| d.get_str("_id").ok().map(String::from)),
            );
            known.since = Some(DateTime::from_millis(
                now.timestamp_millis() - CLOCK_SKEW.as_millis() as i64,
            ));
            known.read_at = Some(Instant::now());
            record_uses(db, &mut known).await;
        }
        let revoked = known.revoked.contains(jti);
        if !revoked {
            known.used.insert(jti.to_string());
            known.last_use = Some(DateTime::now());
        }
        Ok(revoked)
    }
}

/// Writes the uses noted since the last read. Every one of them happened within one refresh
/// interval before `last_use` (a later request would have triggered this earlier), so that
/// one date serves them all. A failure costs only this record, not the request.
async fn record_uses(db: &Db, known: &mut Known) {
    let (used, last_use) = (std::mem::take(&mut known.used), known.last_use.take());
    let Some(last_use) = last_use.filter(|_| !used.is_empty()) else {
        return;
    };
    // One `update_one` per token, matched by `_id` equality, which every server answers from
    // its primary key: FerretDB pushes neither `$in` down (an `update_many` with `$in` reads
    // the whole collection) nor survives one `update` command with many statements (1.24
    // holds a backend connection per statement and deadlocks once they outnumber its pool).
    // A process notes the few tokens its requests carried in one interval; sent concurrently.
    // `$max`: another process may have recorded a later use already.
    // Owned items and explicit types: borrowed ones make the future too general to be `Send`.
    let updates = used.iter().cloned().map(|id: String| {
        let tokens = db.tokens();
        async move {
            tokens
                .update_one(
                    doc! {"_id": id, "TokenType": ACCESS_TOKEN},
                    doc! {"$max": {"TokenDates.LastUseDate": last_use}},
                )
                .await
        }
    });
    let written: Result<Vec<mongodb::results::UpdateResult>, mongodb::error::Error> =
        futures_util::stream::iter(updates)
            .buffer_unordered(4)
            .try_collect()
            .await;
    if let Err(e) = written {
        tracing::warn!(error = %e, tokens = used.len(), "could not record token use");
    }
}
