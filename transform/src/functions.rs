//! The SQL functions `pipe` adds to DataFusion's, in one place for the
//! two kinds of SQL it runs: pipeline SQL ([`crate::PipelinePlan`]) and
//! queries over the tables (`pipe query`, the server's `/v1/query`), so a
//! column is queried with the functions that transformed it.
//!
//! - JSON (`datafusion-functions-json`): `json_get`, `json_get_str`,
//!   `json_get_int`, `json_get_float`, `json_get_bool`, `json_get_json`,
//!   `json_as_text`, `json_contains`, `json_length`, `json_object_keys`,
//!   and the `->` / `->>` operators, for `json` columns (JSON text).
//!
//! Functions that only make sense over a whole table (approximate top-k,
//! time travel) are the query engine's own.

use datafusion::error::Result;
use datafusion::execution::context::SessionContext;

/// Registers the functions on `ctx`.
pub fn register(ctx: &mut SessionContext) -> Result<()> {
    datafusion_functions_json::register_all(ctx)
}
