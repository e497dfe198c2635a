//! Integration tests: the real service against the real Redis and Postgres
//! that `scripts/test.sh` starts (`REDIS_URL`, `DATABASE_URL`).

mod archive;
mod flow;
mod helpers;
mod isolation;
mod operations;
mod process;
mod replicas;
mod validation;
