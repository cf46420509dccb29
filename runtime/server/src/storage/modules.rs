//! Module storage: each module owns the tables whose names start with its
//! prefix, and nothing else. SQLite's authorizer enforces it on every
//! statement a module runs, so no module can touch the server's tables or
//! another module's by accident.

use super::{Storage, StorageError, StorageResult};
use axon::db::ModuleTxn;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::{Connection, OptionalExtension};

/// Allows a statement only on tables starting with `prefix` (and SQLite's
/// own schema tables, which DDL updates).
fn guard(prefix: String) -> impl for<'r> FnMut(AuthContext<'r>) -> Authorization + Send + 'static {
    move |ctx: AuthContext<'_>| {
        let own = |table: &str| {
            table.is_empty() || table.starts_with(&prefix) || table.starts_with("sqlite_")
        };
        let allowed = match ctx.action {
            AuthAction::Select | AuthAction::Function { .. } | AuthAction::Recursive => true,
            AuthAction::Read { table_name, .. }
            | AuthAction::Update { table_name, .. }
            | AuthAction::Insert { table_name }
            | AuthAction::Delete { table_name }
            | AuthAction::CreateTable { table_name }
            | AuthAction::DropTable { table_name }
            | AuthAction::CreateIndex { table_name, .. }
            | AuthAction::DropIndex { table_name, .. }
            | AuthAction::AlterTable { table_name, .. } => own(table_name),
            // Creating an index reindexes it.
            AuthAction::Reindex { index_name } => own(index_name),
            // Pragmas, attachments, triggers, views, temporary and virtual
            // tables, transactions: not for modules.
            _ => false,
        };
        if !allowed {
            tracing::debug!(
                "refused a module's statement: {:?} (prefix {prefix})",
                ctx.action
            );
        }
        if allowed {
            Authorization::Allow
        } else {
            Authorization::Deny
        }
    }
}

/// How long a module's database work may run: SQLite interrupts a
/// statement past it, so no module stalls every write behind the writer.
pub const MODULE_DB_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// The guard and the deadline set on a connection while a module's closure
/// runs; dropping it (also when the closure panics) lifts both, so the
/// server's own statements never meet them.
struct Guarded<'c>(&'c Connection);

impl Drop for Guarded<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .authorizer(None::<fn(AuthContext<'_>) -> Authorization>);
        let _ = self.0.progress_handler(0, None::<fn() -> bool>);
    }
}

/// Runs a module's closure with its guard: only its own tables, at most
/// `MODULE_DB_TIME` of SQL, and a panic becomes an error (rolled back by
/// the caller) instead of unwinding into the writer.
fn with_guard<R>(
    conn: &Connection,
    prefix: &str,
    f: impl FnOnce(&ModuleTxn<'_>) -> rusqlite::Result<R>,
) -> StorageResult<R> {
    conn.authorizer(Some(guard(prefix.to_string())))?;
    let deadline = std::time::Instant::now() + MODULE_DB_TIME;
    conn.progress_handler(1_000, Some(move || std::time::Instant::now() > deadline))?;
    let guarded = Guarded(conn);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        f(&ModuleTxn::new(conn, prefix))
    }));
    let timed_out = std::time::Instant::now() > deadline;
    drop(guarded);
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) if timed_out => Err(StorageError::Module(format!(
            "the module's database work ran past {}s and was interrupted: {e}",
            MODULE_DB_TIME.as_secs()
        ))),
        Ok(Err(e)) => Err(StorageError::Module(e.to_string())),
        Err(panic) => Err(StorageError::Module(format!(
            "the module's database work panicked: {}; nothing of it was stored",
            panic_text(&*panic)
        ))),
    }
}

pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".to_string()
    }
}

impl Storage {
    /// Runs a module's read on a reader connection.
    pub async fn module_read<R, F>(&self, prefix: String, f: F) -> StorageResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&ModuleTxn<'_>) -> rusqlite::Result<R> + Send + 'static,
    {
        self.read(move |c| with_guard(c, &prefix, f)).await
    }

    /// Runs a module's write in the writer's next transaction: all of it or
    /// none of it is stored.
    pub async fn module_write<R, F>(&self, prefix: String, f: F) -> StorageResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&ModuleTxn<'_>) -> rusqlite::Result<R> + Send + 'static,
    {
        self.write(move |w| with_guard(w.conn, &prefix, f)).await
    }

    /// Applies the migrations `module` has not applied yet, in order, in one
    /// transaction; returns how many ran.
    pub async fn migrate_module(
        &self,
        module: String,
        prefix: String,
        migrations: Vec<String>,
    ) -> StorageResult<usize> {
        self.write(move |w| {
            let applied: i64 = w
                .conn
                .query_row(
                    "SELECT version FROM module_schema WHERE module = ?1",
                    [&module],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(0);
            let pending: Vec<&String> = migrations.iter().skip(applied.max(0) as usize).collect();
            for (i, sql) in pending.iter().enumerate() {
                with_guard(w.conn, &prefix, |txn| txn.execute_batch(sql)).map_err(|e| {
                    StorageError::Module(format!(
                        "migration {} failed: {e}",
                        applied as usize + i + 1
                    ))
                })?;
            }
            w.conn.execute(
                "INSERT INTO module_schema (module, version) VALUES (?1, ?2)
                 ON CONFLICT (module) DO UPDATE SET version = excluded.version",
                rusqlite::params![module, migrations.len().max(applied as usize) as i64],
            )?;
            Ok(pending.len())
        })
        .await
    }
}
