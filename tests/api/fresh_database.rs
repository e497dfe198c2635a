//! A database of its own on the test Postgres, dropped when the test ends,
//! also when it panicked.

use uuid::Uuid;

use crate::{helpers::db, world::run_aside};
use triggers_api::config::Config;

/// A database of its own on the test Postgres, for tests that change the
/// schema or drop partitions, which would pull the shared database from
/// under the tests running beside them.
pub struct FreshDatabase {
    pub url: String,
    name: String,
    dropped: bool,
}

impl FreshDatabase {
    pub async fn create() -> Self {
        let name = format!("triggers_test_{}", Uuid::new_v4().simple());
        let shared = Config::from_env()
            .expect("configuration from the environment")
            .database
            .database_url;
        let (server, _) = shared
            .rsplit_once('/')
            .expect("DATABASE_URL names a database");
        let admin = db().await;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("create a database");
        admin.close().await;
        Self {
            url: format!("{server}/{name}"),
            name,
            dropped: false,
        }
    }

    pub async fn pool(&self, connections: u32) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(connections)
            .connect(&self.url)
            .await
            .expect("connect to the fresh database")
    }

    /// Drops the database, ending whatever sessions still use it.
    pub async fn drop(mut self) {
        drop_database(&self.name).await.expect("drop the database");
        self.dropped = true;
    }
}

impl Drop for FreshDatabase {
    /// A test that did not drop its database (it panicked, say) has it
    /// dropped here.
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let name = &self.name;
        match run_aside(drop_database(name)) {
            Some(Ok(())) => {}
            Some(Err(err)) => eprintln!("clean-up: database {name} stays: {err}"),
            None => eprintln!("clean-up: database {name} stays: no answer in time"),
        }
    }
}

async fn drop_database(name: &str) -> Result<(), sqlx::Error> {
    let shared = Config::from_env()
        .map_err(|err| sqlx::Error::Configuration(err.into()))?
        .database
        .database_url;
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&shared)
        .await?;
    let dropped = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&admin)
        .await;
    admin.close().await;
    dropped.map(drop)
}
