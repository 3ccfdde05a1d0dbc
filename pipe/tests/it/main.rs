//! End-to-end tests: the real `pipe` binary, real HTTP, a real catalog and
//! warehouse (local folder, and S3 served by ministack), and readers nobody
//! on the project wrote (PyIceberg, DuckDB).
//!
//! `scripts/test` sets `PIPE_TEST_PYTHON` (a virtualenv with the readers),
//! `PIPE_TEST_S3_ENDPOINT` (a ministack on 127.0.0.1) and
//! `PIPE_TEST_POSTGRES_URI` (a PostgreSQL server on 127.0.0.1) before
//! running these.

mod access;
mod bad_input;
mod console;
mod crash;
mod e2e;
mod fanout;
mod faults;
mod file_paths;
mod files;
mod fraud;
mod fresh;
mod harness;
mod iceberg_guards;
mod iceberg_rest;
mod idempotency;
mod library;
mod maintenance;
mod manage;
mod ops;
mod outage;
mod overload;
mod postgres;
mod posting;
mod quarantine;
mod query_limits;
mod reload;
mod rest;
mod restarts;
mod s3;
mod schema_changes;
mod send;
mod sql_errors;
mod streams;
mod supervision;
mod types;
mod updates;
mod writers;
