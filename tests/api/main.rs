//! Integration tests: the real service against the real Redis and Postgres
//! that `scripts/test.sh` starts (`REDIS_URL`, `DATABASE_URL`).

mod admin;
mod archive;
mod batch;
mod cleanup;
mod cluster;
mod collector;
mod consumer;
mod delivery;
mod delivery_failures;
mod examples;
mod flow;
mod fresh_database;
mod fuzz;
mod helpers;
mod isolation;
mod leases;
mod openapi;
mod operations;
mod outages;
mod partitions;
mod private_deps;
mod process;
mod receiver;
mod replicas;
mod retention;
mod security;
mod traces;
mod validation;
mod world;
