//! Module storage: the transaction handle a module's queries run in, and the
//! rusqlite types they use. See `ModuleApi::database_migrations`.

pub use rusqlite::{self, params, Row};
use rusqlite::{Connection, OptionalExtension};

/// A module's view of the database inside one transaction. `{prefix}` in
/// SQL stands for the module's table prefix; the server refuses every
/// statement on a table without it, and interrupts one that runs too long.
/// The connection itself is not handed out: with it a module could lift
/// its own guard.
pub struct ModuleTxn<'a> {
    conn: &'a Connection,
    prefix: &'a str,
}

impl<'a> ModuleTxn<'a> {
    /// The server opens one around each `db_read` and `db_write`, with its guard in place.
    #[doc(hidden)]
    pub fn new(conn: &'a Connection, prefix: &'a str) -> Self {
        ModuleTxn { conn, prefix }
    }

    /// The SQL with `{prefix}` replaced by this module's table prefix.
    pub fn sql(&self, sql: &str) -> String {
        sql.replace("{prefix}", self.prefix)
    }

    pub fn execute(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
        self.conn.execute(&self.sql(sql), params)
    }

    /// Runs several statements separated by `;`, without parameters.
    pub fn execute_batch(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.execute_batch(&self.sql(sql))
    }

    /// The first row, if any.
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<Option<T>> {
        self.conn.query_row(&self.sql(sql), params, f).optional()
    }

    pub fn query_map<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        f: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<Vec<T>> {
        let mut stmt = self.conn.prepare(&self.sql(sql))?;
        let rows = stmt.query_map(params, f)?.collect();
        rows
    }
}

/// The table prefix of a module path: `axon_demo::DemoModule` → `m_axon_demo__demomodule__`.
pub fn table_prefix(module_path: &str) -> String {
    let mut prefix = String::from("m_");
    for c in module_path.chars() {
        if c.is_ascii_alphanumeric() {
            prefix.push(c.to_ascii_lowercase());
        } else {
            prefix.push('_');
        }
    }
    prefix.push_str("__");
    prefix
}
