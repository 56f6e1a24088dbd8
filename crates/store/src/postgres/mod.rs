//! PostgreSQL store: a connection pool, one transaction per method, leases for several workers.
//!
//! Workers share one database (optionally one schema of it). Each [`PgStore`] is one worker:
//! runs it creates are leased to it, and [`Store::claim_runs`](crate::Store::claim_runs) takes
//! over unfinished top-level runs whose lease expired with `FOR UPDATE SKIP LOCKED`, so
//! concurrent claimers never block on or take each other's rows. Lease times are read from the
//! database clock, so workers on hosts with skewed clocks still agree on when a lease has
//! expired.
//!
//! JSON columns use PostgreSQL's `json` type, not `jsonb`: it keeps documents as written (key
//! order, which the workspace preserves, and `\u0000` in strings, which `jsonb` rejects and an
//! ingested event may well contain). Nothing queries inside them.
//!
//! This module owns the handle, its options, connecting and the pool; it runs no record SQL
//! itself. Where each part lives: [`migrate`] (the schema from `migrations/postgres/`),
//! [`write`] (statements shared by write transactions, the audit chain), [`row`] (decoding
//! PostgreSQL values), [`read`] (queries), [`error`] (error descriptions) and [`store`] (the
//! [`Store`](crate::Store) implementation).

mod channels;
mod error;
mod migrate;
mod pauses;
mod principals;
mod read;
mod row;
mod secrets;
mod sessions;
mod store;
mod write;

pub(crate) use row::get_json;

use crate::{Result, StoreError};
use belay_model::RunRecord;
use deadpool_postgres::{
    HookError, Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime,
};
use error::{db_err, describe, pool_err};
use migrate::migrate;
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row, Statement};

/// How to connect the PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Schema holding belay's tables, created if missing; `None` uses the connection's default
    /// `search_path` (normally `public`).
    pub schema: Option<String>,
    /// How long a claimed run stays leased without renewal.
    pub lease_ms: i64,
    /// Most connections held open at once.
    pub pool_size: usize,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            schema: None,
            lease_ms: 30_000,
            pool_size: 8,
        }
    }
}

/// The PostgreSQL store; one instance is one worker.
pub struct PgStore {
    pool: Pool,
    worker: String,
    lease_ms: i64,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("worker", &self.worker)
            .field("lease_ms", &self.lease_ms)
            .finish()
    }
}

/// `name` as a quoted SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `pg-HOST-PID-RANDOM`, unique per store instance.
fn new_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                .take(63)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let id = belay_model::new_id();
    let random = id.get(24..).unwrap_or(&id);
    format!("pg-{host}-{}-{random}", std::process::id())
}

impl PgStore {
    /// Connects to `url` (a `postgres://` URL or a `key=value` connection string), creates the
    /// schema if one is named and missing, and migrates it.
    pub async fn connect(url: &str, options: PgOptions) -> Result<PgStore> {
        let mut config: tokio_postgres::Config =
            url.parse()
                .map_err(|e: tokio_postgres::Error| StoreError::Database {
                    context: "parsing the database URL",
                    message: describe(&e),
                })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("belay");
        }
        let schema = options.schema.filter(|s| !s.is_empty());
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let mut builder = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(Duration::from_secs(30)));
        if let Some(schema) = &schema {
            // Set on every new connection; `Fast` recycling never resets it.
            let set = format!("SET search_path TO {}", quote_ident(schema));
            builder = builder.post_create(deadpool_postgres::Hook::async_fn(move |client, _| {
                let set = set.clone();
                Box::pin(
                    async move { client.batch_execute(&set).await.map_err(HookError::Backend) },
                )
            }));
        }
        let pool = builder.build().map_err(|e| StoreError::Database {
            context: "creating the connection pool",
            message: describe(&e),
        })?;
        let mut client = pool.get().await.map_err(|e| match e {
            PoolError::Closed => StoreError::Closed,
            e => StoreError::Database {
                context: "connecting to PostgreSQL",
                message: describe(&e),
            },
        })?;
        migrate(&mut client, schema.as_deref()).await?;
        drop(client);
        Ok(PgStore {
            pool,
            worker: new_worker_id(),
            lease_ms: options.lease_ms,
        })
    }

    /// Closes the pool: later calls fail with [`StoreError::Closed`].
    pub fn close(&self) {
        self.pool.close();
    }

    async fn conn(&self) -> Result<deadpool_postgres::Client> {
        self.pool.get().await.map_err(pool_err)
    }

    /// A pooled connection and `sql` prepared (cached) on it.
    async fn prepare(
        &self,
        sql: &str,
        context: &'static str,
    ) -> Result<(deadpool_postgres::Client, Statement)> {
        let c = self.conn().await?;
        let stmt = c.prepare_cached(sql).await.map_err(db_err(context))?;
        Ok((c, stmt))
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        context: &'static str,
    ) -> Result<Vec<Row>> {
        let (c, stmt) = self.prepare(sql, context).await?;
        c.query(&stmt, params).await.map_err(db_err(context))
    }

    async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        context: &'static str,
    ) -> Result<Option<Row>> {
        let (c, stmt) = self.prepare(sql, context).await?;
        c.query_opt(&stmt, params).await.map_err(db_err(context))
    }

    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        context: &'static str,
    ) -> Result<u64> {
        let (c, stmt) = self.prepare(sql, context).await?;
        c.execute(&stmt, params).await.map_err(db_err(context))
    }

    /// This worker as a run's owner, unless the run is already final.
    fn owner_for(&self, run: &RunRecord) -> Option<&str> {
        (!run.status.is_final()).then_some(self.worker.as_str())
    }
}
