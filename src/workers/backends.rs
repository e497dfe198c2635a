//! What every worker is built on: Postgres, Redis, and the names of the
//! deployment's keys.

use fred::prelude::Pool;

use crate::{
    config::ConnectionUrl,
    redis::{self, Keys, RedisError},
    store::Store,
    streams::{Consumer, StreamKind},
};

#[derive(Clone)]
pub struct Backends {
    pub store: Store,
    pub pool: Pool,
    pub keys: Keys,
    /// Where each consumer opens the connection of its own that its
    /// blocking reads hold.
    pub redis_url: ConnectionUrl,
}

impl Backends {
    /// Joins `group` on the `kinds` of streams as consumer `name`.
    pub async fn join(
        &self,
        kinds: &[StreamKind],
        group: &str,
        name: &str,
    ) -> Result<Consumer, RedisError> {
        let reader = redis::connect_client(&self.redis_url).await?;
        Consumer::join(reader, self.pool.clone(), &self.keys, kinds, group, name).await
    }
}
