//! The statements of one transaction sent together: prepared once per connection (deadpool's
//! statement cache), then every Bind/Execute written to the connection before the first answer
//! is awaited. tokio-postgres pipelines the requests of concurrent futures on one connection and
//! the server runs them in the order they arrive, so a [`Batch`] runs its statements in the
//! order pushed, as if one after the other, for one round trip instead of two per statement.
//!
//! Order is kept because every statement is prepared before any is executed: an execute with a
//! prepared statement writes its request on its first poll, and `try_join_all` polls its futures
//! in order. A failing statement aborts the transaction, so those after it fail too; the error
//! returned is the first (answers arrive in order).

use std::borrow::Cow;

use cityhub_storage::StoreError;
use futures_util::future::try_join_all;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::{OrBackend, Tx};

/// A parameter of a batched statement, owned by the batch or borrowed from the write.
pub(crate) type Param<'a> = Box<dyn ToSql + Sync + Send + 'a>;

/// Statements to run in one transaction, in order.
#[derive(Default)]
pub(crate) struct Batch<'a> {
    statements: Vec<(Cow<'static, str>, Vec<Param<'a>>, bool)>,
}

/// What one statement of a batch answered.
pub(crate) enum Answer {
    /// It ran (how many rows it affected is nobody's concern yet).
    Done,
    /// The rows it returned (a statement pushed with [`Batch::push_rows`]).
    Rows(Vec<Row>),
}

impl<'a> Batch<'a> {
    pub(crate) fn push(&mut self, sql: impl Into<Cow<'static, str>>, params: Vec<Param<'a>>) {
        self.statements.push((sql.into(), params, false));
    }

    /// Adds a statement whose returned rows are wanted; answers its place in the batch.
    pub(crate) fn push_rows(&mut self, sql: impl Into<Cow<'static, str>>, params: Vec<Param<'a>>) -> usize {
        self.statements.push((sql.into(), params, true));
        self.statements.len() - 1
    }

    /// Runs the statements in `tx`; answers what each one did, in order.
    pub(crate) async fn run(&self, tx: &Tx<'_>) -> Result<Vec<Answer>, StoreError> {
        if self.statements.is_empty() {
            return Ok(Vec::new());
        }
        let prepared =
            try_join_all(self.statements.iter().map(|(sql, _, _)| tx.prepare_cached(sql))).await.or_backend()?;
        let runs = prepared.iter().zip(&self.statements).map(|(statement, (_, params, rows))| async move {
            let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
            // Both send their request on first poll, so the order holds for either.
            match rows {
                true => tx.query(statement, &refs).await.map(Answer::Rows),
                false => tx.execute(statement, &refs).await.map(|_| Answer::Done),
            }
        });
        try_join_all(runs).await.or_backend()
    }
}
