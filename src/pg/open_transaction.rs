//! A transaction begun by hand on a pooled connection, so that its `BEGIN` goes out
//! pipelined with the statements around it: `Client::transaction` waits for the
//! answer to its `BEGIN`, a round trip of its own.

use deadpool_postgres::Object;

/// A pooled connection whose holder begins a transaction on it by hand. The
/// connection goes back to the pool only through [`OpenTransaction::commit`] or
/// [`OpenTransaction::rollback`], once the transaction has ended. Dropped otherwise
/// (an early return, or its task aborted between a request and its answer), the
/// connection is taken out of the pool and closed, and the server rolls the
/// transaction back: none goes back to the pool inside a transaction, holding its
/// locks.
pub struct OpenTransaction(Option<Object>);

impl OpenTransaction {
    pub fn new(c: Object) -> Self {
        Self(Some(c))
    }

    pub fn client(&self) -> &Object {
        self.0.as_ref().expect("held until the transaction ends")
    }

    /// Commits; the connection, outside any transaction, for more work (or to drop
    /// back into the pool).
    pub async fn commit(mut self) -> Result<Object, tokio_postgres::Error> {
        self.client().batch_execute("COMMIT").await?;
        Ok(self.0.take().expect("held until the transaction ends"))
    }

    /// Rolls back; the connection as [`OpenTransaction::commit`] gives it, or `None`
    /// if the rollback failed (the connection is closed).
    pub async fn rollback(mut self) -> Option<Object> {
        match self.client().batch_execute("ROLLBACK").await {
            Ok(()) => self.0.take(),
            Err(_) => None,
        }
    }
}

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            drop(Object::take(c));
        }
    }
}
