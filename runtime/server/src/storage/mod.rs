//! Storage: SQLite, embedded. Everything the server keeps goes through the
//! methods of [`Storage`]; SQL lives only in this module, which is the seam a
//! PostgreSQL backend will fill.
//!
//! Writes go to one writer thread that commits every write queued at that
//! moment in one transaction (group commit: 32 concurrent senders pay one
//! fsync, not 32), each write in its own savepoint so one failing write does
//! not undo the others. A write is acknowledged only after its transaction
//! committed with `synchronous=FULL`. Reads use a pool of connections, which
//! WAL lets run beside the writer.

mod account;
mod cache;
mod e2e_keys;
mod events;
mod federation;
mod modules;
mod notify;
mod pushers;
mod receipts;
mod room_keys;
mod schema;
mod server_keys;
mod to_device;
mod users;

pub use account::*;
pub use e2e_keys::{ClaimedKey, DeviceListChanges, KeySignature, UploadedKey, UserKeys};
pub use events::*;
pub use federation::{OutboundBatch, MAX_EDUS_PER_TXN, MAX_PDUS_PER_TXN, OUTLIER_FLOOR};

pub use notify::{Listener, WakeKey};
pub use pushers::{NotificationRow, PusherRow};
pub use receipts::{NewReceipt, ReceiptRow};
pub use room_keys::{BackupVersion, RoomKeyBackup, RoomKeyUpload};
pub use server_keys::RemoteKey;
pub use to_device::{DeviceTarget, ToDeviceMessage};
pub use users::*;

use rusqlite::{Connection, OpenFlags};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};

/// A storage failure: the server answers 500 and logs it; nothing the
/// client sent is half-written, since every write is one transaction.
#[derive(Debug)]
pub enum StorageError {
    Sqlite(rusqlite::Error),
    /// The writer thread or the pool is gone (the server is shutting down).
    Closed(String),
    /// A write refused for a reason the caller handles (such as a taken name).
    Conflict(String),
    /// A module's own query failed (its SQL, or a table it may not touch).
    Module(String),
    /// An event the auth rules refuse against the room as the write finds
    /// it (the room changed since the event was built).
    Refused(String),
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Sqlite(e) => write!(f, "database error: {e}"),
            StorageError::Closed(what) => write!(f, "database unavailable: {what}"),
            StorageError::Conflict(what) => write!(f, "conflict: {what}"),
            StorageError::Module(what) => write!(f, "module query failed: {what}"),
            StorageError::Refused(why) => write!(f, "refused: {why}"),
        }
    }
}

impl std::error::Error for StorageError {}

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        StorageError::Sqlite(e)
    }
}

impl From<serde_json::Error> for StorageError {
    fn from(e: serde_json::Error) -> Self {
        StorageError::Closed(format!("stored JSON does not parse: {e}"))
    }
}

pub type StorageResult<T> = Result<T, StorageError>;

/// A column holding a Matrix ID (user, room, event, device, alias). The
/// server wrote it from a parsed ID, so it parses; if the file was edited
/// by hand and it does not, the read fails rather than passing a string on.
pub(crate) fn id<T>(row: &rusqlite::Row<'_>, column: usize) -> rusqlite::Result<T>
where
    T: TryFrom<String>,
    T::Error: std::error::Error + Send + Sync + 'static,
{
    let text: String = row.get(column)?;
    T::try_from(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// A `membership` column.
pub(crate) fn membership_column(
    row: &rusqlite::Row<'_>,
    column: usize,
) -> rusqlite::Result<axon::Membership> {
    let text: String = row.get(column)?;
    axon::Membership::parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Text,
            format!("unknown membership `{text}`").into(),
        )
    })
}

/// What a write job sees: the connection inside its savepoint, and the
/// stream position counter (positions order everything `/sync` reports).
pub struct WriteCtx<'a> {
    pub(crate) conn: &'a Connection,
    next_position: &'a mut i64,
    /// Whom to wake once this write has committed (helpers shared by
    /// several writes know whom their rows concern).
    wakes: Vec<notify::WakeKey>,
    /// The destinations this write queued something for, rung on the
    /// outbox's doorbell once it has committed.
    queued: Vec<String>,
}

impl WriteCtx<'_> {
    /// A new stream position, greater than every committed one.
    pub fn next_position(&mut self) -> i64 {
        let position = *self.next_position;
        *self.next_position += 1;
        position
    }

    /// Wakes the waiters on `key` once this write has committed.
    pub(crate) fn wake_after_commit(&mut self, key: notify::WakeKey) {
        self.wakes.push(key);
    }

    /// Queues `body` (an event ID for a PDU, JSON for an EDU) for
    /// `destination`; the outbox hears of it once this write has committed.
    pub(crate) fn queue_for(
        &mut self,
        destination: &str,
        kind: federation::QueueKind,
        body: &str,
    ) -> StorageResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO federation_outbox (destination, kind, body) VALUES (?1, ?2, ?3)",
            )?
            .execute(rusqlite::params![destination, kind.as_str(), body])?;
        if !self.queued.iter().any(|d| d == destination) {
            self.queued.push(destination.to_string());
        }
        Ok(())
    }
}

type Completion = Box<dyn FnOnce(&StorageResult<()>) + Send>;
type Job = Box<dyn FnOnce(&mut WriteCtx<'_>) -> (bool, Completion) + Send>;

/// The server's database.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

struct Inner {
    /// Shared with the writer thread apart from the rest: a write finishing
    /// after the server is gone must not drop the reader pool there (its
    /// connections close through the async runtime, which that thread is not in).
    caches: Arc<cache::Caches>,
    readers: deadpool_sqlite::Pool,
    writer: mpsc::UnboundedSender<Job>,
    /// The highest committed stream position.
    position: watch::Receiver<i64>,
    path: PathBuf,
}

const PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;";

/// Prepared statements kept per connection. rusqlite's default is 16; a
/// `/sync` alone runs more than that in its one reader trip, and once the
/// set outgrew the cache every statement was parsed again on every sync
/// (the fan-out bench's delivery latency went from 26 to 270 ms). The
/// server has about a hundred distinct statements.
const STATEMENT_CACHE: usize = 256;

impl Storage {
    /// Opens (creating if needed) the database at `path` and applies the
    /// schema migrations.
    pub fn open(path: &Path) -> StorageResult<Storage> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StorageError::Closed(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
        }
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.execute_batch(PRAGMAS)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        schema::migrate(&mut conn)?;
        let start = schema::max_position(&conn)?;
        let (position_tx, position_rx) = watch::channel(start);
        let (writer, jobs) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("axon-db-writer".into())
            .spawn(move || writer_loop(conn, jobs, start + 1, position_tx))
            .map_err(|e| StorageError::Closed(format!("cannot start the writer thread: {e}")))?;
        let readers = deadpool_sqlite::Config::new(path)
            .builder(deadpool_sqlite::Runtime::Tokio1)
            .map_err(|e| StorageError::Closed(e.to_string()))?
            .max_size(8)
            .post_create(deadpool_sqlite::Hook::async_fn(|conn, _| {
                Box::pin(async move {
                    conn.interact(|c| {
                        c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
                        c.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;")
                    })
                    .await
                    .map_err(|e| deadpool_sqlite::HookError::message(e.to_string()))?
                    .map_err(|e| deadpool_sqlite::HookError::message(e.to_string()))
                })
            }))
            .build()
            .map_err(|e| StorageError::Closed(e.to_string()))?;
        Ok(Storage {
            inner: Arc::new(Inner {
                caches: Default::default(),
                readers,
                writer,
                position: position_rx,
                path: path.to_path_buf(),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The highest committed stream position.
    pub fn current_position(&self) -> i64 {
        *self.inner.position.borrow()
    }

    /// Registers a waiter for the commits touching `keys`. Register, then
    /// check `current_position` again: a commit that landed in between has
    /// moved it.
    pub fn listen(&self, keys: &[WakeKey]) -> Listener {
        self.inner.caches.wakes.listen(keys)
    }

    /// Runs `f` on a reader connection.
    pub(crate) async fn read<R, F>(&self, f: F) -> StorageResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StorageResult<R> + Send + 'static,
    {
        let conn = self
            .inner
            .readers
            .get()
            .await
            .map_err(|e| StorageError::Closed(e.to_string()))?;
        conn.interact(move |c| f(c))
            .await
            .map_err(|e| StorageError::Closed(e.to_string()))?
    }

    pub(crate) fn caches(&self) -> &cache::Caches {
        &self.inner.caches
    }

    /// Runs `f` in the writer's next transaction; returns once it committed.
    pub(crate) async fn write<R, F>(&self, f: F) -> StorageResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut WriteCtx<'_>) -> StorageResult<R> + Send + 'static,
    {
        self.write_then(f, |_, _| {}).await
    }

    /// Like `write`; `on_commit` runs on the writer thread once the write
    /// committed, before later writes commit: where caches follow the database.
    pub(crate) async fn write_then<R, F, C>(&self, f: F, on_commit: C) -> StorageResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut WriteCtx<'_>) -> StorageResult<R> + Send + 'static,
        C: FnOnce(&cache::Caches, &R) + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let caches = self.inner.caches.clone();
        let job: Job = Box::new(move |ctx| {
            // A panic in a write must not take the writer thread (and every
            // later write) down: it fails this write, which is rolled back.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(ctx)))
                .unwrap_or_else(|panic| {
                    let message = modules::panic_text(&*panic);
                    tracing::error!("a database write panicked: {message}");
                    Err(StorageError::Closed(format!("a write panicked: {message}")))
                });
            let ok = result.is_ok();
            let wakes = std::mem::take(&mut ctx.wakes);
            let queued = std::mem::take(&mut ctx.queued);
            let completion: Completion = Box::new(move |committed| {
                let outcome = match committed {
                    Ok(()) => {
                        if let Ok(value) = &result {
                            on_commit(&caches, value);
                            caches.wakes.wake(wakes.iter());
                            caches.outbox.ring(queued);
                        }
                        result
                    }
                    Err(e) => Err(StorageError::Closed(format!("commit failed: {e}"))),
                };
                let _ = tx.send(outcome);
            });
            (ok, completion)
        });
        self.inner
            .writer
            .send(job)
            .map_err(|_| StorageError::Closed("the writer thread stopped".into()))?;
        rx.await
            .map_err(|_| StorageError::Closed("the writer thread stopped".into()))?
    }
}

/// The writer: takes every job queued, runs each in a savepoint of one
/// transaction, commits once, then answers them all.
fn writer_loop(
    mut conn: Connection,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    mut next_position: i64,
    position: watch::Sender<i64>,
) {
    const MAX_BATCH: usize = 256;
    while let Some(first) = jobs.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut completions = Vec::with_capacity(batch.len());
        let committed = run_batch(&mut conn, batch, &mut next_position, &mut completions);
        if let Err(e) = &committed {
            tracing::error!("database commit failed: {e}");
        }
        // Publish the position first: a caller that sees its write
        // acknowledged must also see it in `current_position`.
        if committed.is_ok() {
            position.send_replace(next_position - 1);
        }
        for completion in completions {
            completion(&committed);
        }
    }
}

fn run_batch(
    conn: &mut Connection,
    batch: Vec<Job>,
    next_position: &mut i64,
    completions: &mut Vec<Completion>,
) -> StorageResult<()> {
    // On an early return the remaining jobs are dropped, and their callers
    // get `StorageError::Closed`.
    // IMMEDIATE takes the write lock at BEGIN, where SQLite's busy handler
    // waits for it. A deferred transaction upgrades at its first write,
    // where SQLite answers SQLITE_BUSY at once instead of waiting: a whole
    // batch of sends then failed with "database is locked" whenever another
    // connection held the lock for a moment (seen under load in the bench).
    let mut txn = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for job in batch {
        let savepoint = txn.savepoint()?;
        let (ok, completion) = {
            let mut ctx = WriteCtx {
                conn: &savepoint,
                next_position,
                wakes: Vec::new(),
                queued: Vec::new(),
            };
            job(&mut ctx)
        };
        if ok {
            savepoint.commit()?;
        } else {
            // Dropping a savepoint rolls it back: this job leaves no trace.
            drop(savepoint);
        }
        completions.push(completion);
    }
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write still running when every handle to the storage is gone (a
    /// background write at shutdown) finishes on the writer thread; the
    /// reader pool must not be dropped there, outside the async runtime:
    /// that panicked twice and aborted the whole process.
    #[test]
    fn a_write_outliving_the_storage_does_not_abort_the_process() {
        let path = std::env::temp_dir().join(format!(
            "axon-outliving-write-{}-{}.db",
            std::process::id(),
            axon::time::now_ms()
        ));
        static WRITER_PANICS: std::sync::atomic::AtomicUsize =
            std::sync::atomic::AtomicUsize::new(0);
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some("axon-db-writer") {
                WRITER_PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            default_hook(info);
        }));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let storage = Storage::open(&path).unwrap();
            // Borrow a reader so that the pool holds a connection to drop.
            storage.read(|_| Ok(())).await.unwrap();
            let writer = storage.clone();
            let write = tokio::spawn(async move {
                writer
                    .write(|_| {
                        std::thread::sleep(std::time::Duration::from_millis(300));
                        Ok(())
                    })
                    .await
            });
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            write.abort();
            drop(storage);
        });
        drop(runtime);
        // The writer finishes the write meanwhile; the process lives on.
        std::thread::sleep(std::time::Duration::from_millis(600));
        let _ = std::panic::take_hook();
        assert_eq!(WRITER_PANICS.load(std::sync::atomic::Ordering::SeqCst), 0);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
