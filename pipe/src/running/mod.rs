//! The running parts of `pipe serve`: the [`supervisor`] that starts,
//! stops and switches streams and pipelines, each pipeline's task
//! ([`pipeline`]: read the buffer, run the SQL, write and commit), and the
//! figures they keep for `/metrics` and the admin API ([`metrics`]), and
//! what they have not committed, for fresh reads ([`fresh`]).

pub mod fresh;
pub mod metrics;
pub mod pipeline;
pub mod supervisor;
