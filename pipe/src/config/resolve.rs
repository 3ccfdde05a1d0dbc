//! `pipe.toml` resolved: names, paths, tables and limits checked, defaults
//! filled in, overrides applied ([`Config::resolve`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pipe_ingest::http::{
    StreamPolicy, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_DECOMPRESSED_BYTES, DEFAULT_MAX_EVENTS,
};
use pipe_schemas::{JsonSchema, StreamSchema};
use pipe_sink::{
    CatalogKind, CatalogSettings, FileFormat, FileSinkSettings, PartitionField, RestSettings,
    S3Options, SnapshotRetention, Warehouse,
};

use super::tokens::token_digests;
use super::*;
use crate::config::sink_paths::{check_partitioning, FileSinkRoots};
use crate::{Error, Result};

impl Config {
    /// Reads, parses and validates the file at `path`, then applies overrides.
    /// (The definitions the admin API made are not read: `pipe serve` uses
    /// [`crate::config::definitions::Definitions::load`].)
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Config> {
        let (file, base) = ConfigFile::read(path)?;
        Config::resolve(file, &base, overrides)
    }

    /// Validates a parsed file; relative paths resolve against `base`.
    pub fn resolve(file: ConfigFile, base: &Path, overrides: &Overrides) -> Result<Config> {
        let err = |key: String, message: String| Error::Config(format!("`{key}`: {message}"));
        let data_dir = overrides
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("data"));
        let data_dir = absolute(base, &data_dir);
        let listen = overrides
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("a valid address"));

        let warehouse = match file.warehouse {
            None => Warehouse {
                location: file_url(&data_dir.join("warehouse")),
                s3: S3Options::default(),
            },
            Some(w) if w.location.starts_with("s3://") || w.location.starts_with("s3a://") => {
                let rest = w
                    .location
                    .split_once("://")
                    .map(|(_, r)| r)
                    .unwrap_or_default();
                if rest.split('/').next().unwrap_or_default().len() < 3 {
                    return Err(err(
                        "warehouse.location".into(),
                        format!("expected `s3://bucket/prefix`, got `{}`", w.location),
                    ));
                }
                Warehouse {
                    location: w.location.trim_end_matches('/').to_string(),
                    s3: w.s3,
                }
            }
            Some(w) if w.location.contains("://") && !w.location.starts_with("file://") => {
                return Err(err(
                    "warehouse.location".into(),
                    format!(
                        "expected a folder, `file://…` or `s3://…`, got `{}`",
                        w.location
                    ),
                ))
            }
            Some(w) => {
                let path = w.location.strip_prefix("file://").unwrap_or(&w.location);
                Warehouse {
                    location: file_url(&absolute(base, Path::new(path))),
                    s3: S3Options::default(),
                }
            }
        };
        let catalog_file = file.catalog.unwrap_or_default();
        let rest_only = [
            ("warehouse", catalog_file.warehouse.is_some()),
            ("token", catalog_file.token.is_some()),
            ("credential", catalog_file.credential.is_some()),
            (
                "oauth2_server_uri",
                catalog_file.oauth2_server_uri.is_some(),
            ),
            ("scope", catalog_file.scope.is_some()),
        ];
        let kind = match catalog_file.kind.as_deref() {
            None | Some("sql") => {
                if let Some((key, _)) = rest_only.iter().find(|(_, set)| *set) {
                    return Err(err(
                        format!("catalog.{key}"),
                        "only a REST catalog (`type = \"rest\"`) takes this".into(),
                    ));
                }
                CatalogKind::Sql {
                    uri: sql_catalog_uri(catalog_file.uri, base, &data_dir)?,
                }
            }
            Some("rest") => {
                let Some(uri) = catalog_file.uri.filter(|u| u.starts_with("http")) else {
                    return Err(err(
                        "catalog.uri".into(),
                        "a REST catalog needs its `http://…` or `https://…` URI".into(),
                    ));
                };
                CatalogKind::Rest(RestSettings {
                    uri,
                    warehouse: catalog_file.warehouse,
                    token: catalog_file.token,
                    credential: catalog_file.credential,
                    oauth2_server_uri: catalog_file.oauth2_server_uri,
                    scope: catalog_file.scope,
                })
            }
            Some(other) => {
                return Err(err(
                    "catalog.type".into(),
                    format!("expected `sql` or `rest`, got `{other}`"),
                ))
            }
        };
        let catalog = CatalogSettings {
            name: catalog_file.name.unwrap_or_else(|| "pipe".into()),
            kind,
            warehouse,
        };

        let mut streams = Vec::new();
        for (name, s) in file.streams {
            check_name(&format!("streams.{name}"), &name)?;
            let read = |k: &str, p: &Path| {
                let path = absolute(base, p);
                std::fs::read_to_string(&path).map_err(|e| {
                    err(
                        format!("streams.{name}.{k}"),
                        format!("reading `{}`: {e}", path.display()),
                    )
                })
            };
            let (schema, json_schema) = match (s.schema_file, s.json_schema_file) {
                (Some(_), Some(_)) => {
                    return Err(err(
                        format!("streams.{name}"),
                        "set `schema_file` or `json_schema_file`, not both".into(),
                    ))
                }
                (None, None) => (None, None),
                (Some(p), None) => {
                    let text = read("schema_file", &p)?;
                    let schema = StreamSchema::from_json(&text)
                        .map_err(|e| err(format!("streams.{name}.schema_file"), e.to_string()))?;
                    (Some(schema), None)
                }
                (None, Some(p)) => {
                    let text = read("json_schema_file", &p)?;
                    let js = JsonSchema::from_json(&text).map_err(|e| {
                        err(format!("streams.{name}.json_schema_file"), e.to_string())
                    })?;
                    (Some(js.schema.clone()), Some(js))
                }
            };
            let key = |k: &str| format!("streams.{name}.{k}");
            let token_digests = token_digests(&key("auth_token_sha256"), &s.auth_token_sha256)?;
            for origin in &s.cors_origins {
                let valid = origin == "*"
                    || ((origin.starts_with("http://") || origin.starts_with("https://"))
                        && !origin.ends_with('/'));
                if !valid {
                    return Err(err(
                        key("cors_origins"),
                        format!(
                            "expected `*` or an origin like `https://example.com`, got `{origin}`"
                        ),
                    ));
                }
            }
            let positive = |k: &str, v: Option<usize>, default: usize| match v {
                Some(0) => Err(err(key(k), "must be at least 1".into())),
                Some(v) => Ok(v),
                None => Ok(default),
            };
            let mut policy = StreamPolicy {
                quarantine: false,
                http_enabled: s.http.unwrap_or(true),
                token_digests,
                cors_origins: s.cors_origins,
                max_body_bytes: positive(
                    "max_request_bytes",
                    s.max_request_bytes,
                    DEFAULT_MAX_BODY_BYTES,
                )?,
                max_decompressed_bytes: positive(
                    "max_decompressed_bytes",
                    s.max_decompressed_bytes,
                    DEFAULT_MAX_DECOMPRESSED_BYTES,
                )?,
                max_inflight_bytes: 0,
            };
            let inflight_mb = positive(
                "max_inflight_mb",
                s.max_inflight_mb,
                pipe_ingest::http::DEFAULT_MAX_INFLIGHT_BYTES >> 20,
            )?;
            if inflight_mb > MAX_MB as usize {
                return Err(err(
                    key("max_inflight_mb"),
                    format!("must be at most {MAX_MB} (16 TiB)"),
                ));
            }
            policy.max_inflight_bytes = inflight_mb << 20;
            let one_request = policy.max_body_bytes + policy.max_decompressed_bytes;
            if policy.max_inflight_bytes < one_request {
                return Err(err(
                    key("max_inflight_mb"),
                    format!("must hold at least one request of the largest size: `max_request_bytes` + `max_decompressed_bytes` = {one_request} bytes"),
                ));
            }
            let max_events = positive(
                "max_events_per_request",
                s.max_events_per_request,
                DEFAULT_MAX_EVENTS,
            )?;
            let window = positive(
                "idempotency_window_secs",
                s.idempotency_window_secs.map(|w| w as usize),
                86_400,
            )?;
            let max_keys = positive(
                "idempotency_max_keys",
                s.idempotency_max_keys,
                pipe_ingest::idempotency::DEFAULT_MAX_KEYS,
            )?;
            let segment_mb = positive("buffer_segment_mb", s.buffer_segment_mb, 64)?;
            let quota_mb = positive("max_buffer_mb", s.max_buffer_mb, 8192)?;
            for (name, mb) in [
                ("buffer_segment_mb", segment_mb),
                ("max_buffer_mb", quota_mb),
            ] {
                if mb > MAX_MB as usize {
                    return Err(err(key(name), format!("must be at most {MAX_MB} (16 TiB)")));
                }
            }
            if s.min_free_disk_mb.is_some_and(|mb| mb > MAX_MB) {
                return Err(err(
                    key("min_free_disk_mb"),
                    format!("must be at most {MAX_MB} (16 TiB)"),
                ));
            }
            if quota_mb < 2 * segment_mb {
                return Err(err(
                    key("max_buffer_mb"),
                    format!("must be at least twice `buffer_segment_mb` ({segment_mb}), or nothing could ever be released"),
                ));
            }
            let quarantine = match (s.invalid_events, s.quarantine_table) {
                (InvalidEvents::Reject, Some(_)) => {
                    return Err(err(
                        key("quarantine_table"),
                        "set `invalid_events = \"quarantine\"` to use a quarantine table".into(),
                    ))
                }
                (InvalidEvents::Reject, None) => None,
                (InvalidEvents::Quarantine, table) => Some(table_name(
                    &key("quarantine_table"),
                    table.unwrap_or_else(|| format!("default.{name}_quarantine")),
                )?),
            };
            policy.quarantine = quarantine.is_some();
            let stream = StreamConfig {
                name,
                schema,
                json_schema,
                policy,
                max_events,
                unknown_fields: s.unknown_fields,
                idempotency_window: std::time::Duration::from_secs(window as u64),
                idempotency_max_keys: max_keys,
                segment_bytes: segment_mb as u64 * 1024 * 1024,
                max_buffer_bytes: quota_mb as u64 * 1024 * 1024,
                min_free_disk_bytes: s.min_free_disk_mb.map(|mb| mb * 1024 * 1024),
                quarantine,
            };
            stream.decoder()?;
            streams.push(stream);
        }
        let file_sink_roots =
            FileSinkRoots::new(&catalog.warehouse.location, &file.file_sink_roots, base)?;
        let mut sinks = Vec::new();
        for (name, s) in file.sinks {
            check_name(&format!("sinks.{name}"), &name)?;
            let row_group_rows = s
                .row_group_rows
                .unwrap_or(pipe_sink::WriteOptions::default().row_group_rows);
            let files_only = |key: &str, set: bool| {
                if set && s.kind == "iceberg" {
                    return Err(err(
                        format!("sinks.{name}.{key}"),
                        "only file sinks (`type = \"parquet\"` or `\"json\"`) take this".into(),
                    ));
                }
                Ok(())
            };
            files_only("path", s.path.is_some())?;
            files_only("partitioning", s.partitioning.is_some())?;
            if s.partition_by.is_some() && s.kind != "iceberg" {
                return Err(err(
                    format!("sinks.{name}.partition_by"),
                    "file sinks set their folders with `partitioning`".into(),
                ));
            }
            if s.bloom_filter_columns.is_some() && s.kind != "iceberg" {
                return Err(err(
                    format!("sinks.{name}.bloom_filter_columns"),
                    "bloom filters are written by Iceberg sinks only".into(),
                ));
            }
            let bloom_filter_columns = s.bloom_filter_columns.clone().unwrap_or_default();
            if let Some(bad) = bloom_filter_columns
                .iter()
                .find(|c| c.is_empty() || c.contains('.'))
            {
                return Err(err(
                    format!("sinks.{name}.bloom_filter_columns"),
                    format!("`{bad}` is not a top-level column name"),
                ));
            }
            if s.sort_by.is_some() && s.kind != "iceberg" {
                return Err(err(
                    format!("sinks.{name}.sort_by"),
                    "a sort order belongs to Iceberg tables; file sinks write rows as they come"
                        .into(),
                ));
            }
            let sort_by = match &s.sort_by {
                None => None,
                Some(columns) => Some(
                    columns
                        .iter()
                        .enumerate()
                        .map(|(i, c)| {
                            c.parse::<pipe_sink::SortColumn>().map_err(|e| {
                                err(format!("sinks.{name}.sort_by[{i}]"), e.to_string())
                            })
                        })
                        .collect::<Result<Vec<_>>>()?,
                ),
            };
            if s.target_file_size_mb.is_some() && s.kind != "iceberg" {
                return Err(err(
                    format!("sinks.{name}.target_file_size_mb"),
                    "file sinks write one file per folder and roll; use `roll_size_mb`".into(),
                ));
            }
            let target_file_bytes = match s.target_file_size_mb {
                None => None,
                Some(mb @ 1..=1_048_576) => Some(mb as usize * 1024 * 1024),
                Some(_) => {
                    return Err(err(
                        format!("sinks.{name}.target_file_size_mb"),
                        "must be 1 to 1048576 (1 TiB)".into(),
                    ))
                }
            };
            let retention_keys = s.snapshot_max_age_secs.is_some()
                || s.snapshot_retain_last.is_some()
                || s.snapshot_max_count.is_some()
                || s.expire_snapshots.is_some()
                || s.compaction.is_some()
                || s.full_compaction_interval_secs.is_some();
            if retention_keys && s.kind != "iceberg" {
                return Err(err(
                    format!("sinks.{name}"),
                    "snapshot expiry and compaction settings apply to Iceberg sinks only".into(),
                ));
            }
            if s.snapshot_retain_last == Some(0) {
                return Err(err(
                    format!("sinks.{name}.snapshot_retain_last"),
                    "must be at least 1 (the current snapshot is always kept)".into(),
                ));
            }
            let defaults = SnapshotRetention::default();
            let retain_last = s.snapshot_retain_last.unwrap_or(defaults.retain_last);
            let max_count = s
                .snapshot_max_count
                .unwrap_or(defaults.max_count.max(retain_last));
            if max_count < retain_last {
                return Err(err(
                    format!("sinks.{name}.snapshot_max_count"),
                    format!("{max_count} is below `snapshot_retain_last` ({retain_last}): the newest `snapshot_retain_last` snapshots are always kept"),
                ));
            }
            let retention = (s.expire_snapshots != Some(false)).then(|| SnapshotRetention {
                max_age: s
                    .snapshot_max_age_secs
                    .map_or(defaults.max_age, std::time::Duration::from_secs),
                retain_last,
                max_count,
            });
            let partition_by = match &s.partition_by {
                None => vec![PartitionField::ingest_day()],
                Some(specs) => specs
                    .iter()
                    .enumerate()
                    .map(|(i, spec)| {
                        spec.parse::<PartitionField>().map_err(|e| {
                            err(format!("sinks.{name}.partition_by[{i}]"), e.to_string())
                        })
                    })
                    .collect::<Result<Vec<_>>>()?,
            };
            let target = match s.kind.as_str() {
                "iceberg" => {
                    let Some(table) = s.table.clone() else {
                        return Err(err(
                            format!("sinks.{name}.table"),
                            "an Iceberg sink needs a table name".into(),
                        ));
                    };
                    check_name(&format!("sinks.{name}.table"), &table)?;
                    SinkTarget::Table {
                        namespace: s.namespace.clone(),
                        table,
                    }
                }
                kind @ ("parquet" | "json") => {
                    if s.table.is_some() {
                        return Err(err(
                            format!("sinks.{name}.table"),
                            format!("a `{kind}` sink writes files under `path`, not a table"),
                        ));
                    }
                    let format = match (kind, s.compression) {
                        ("parquet", codec) => FileFormat::Parquet {
                            codec: codec.unwrap_or_default(),
                            row_group_rows,
                        },
                        (_, None | Some(Codec::None)) => FileFormat::Json { gzip: false },
                        (_, Some(Codec::Gzip)) => FileFormat::Json { gzip: true },
                        (_, Some(other)) => {
                            return Err(err(
                                format!("sinks.{name}.compression"),
                                format!("JSON files take `gzip` or `none`, got `{other:?}`"),
                            ))
                        }
                    };
                    let location = file_sink_roots.resolve(&name, s.path.as_deref())?;
                    let s3 = if location.starts_with("s3://") {
                        catalog.warehouse.s3.clone()
                    } else {
                        S3Options::default()
                    };
                    let partitioning = s
                        .partitioning
                        .clone()
                        .unwrap_or_else(|| pipe_sink::files::DEFAULT_PARTITIONING.into());
                    check_partitioning(&name, &partitioning)?;
                    SinkTarget::Files(FileSinkSettings {
                        location,
                        s3,
                        format,
                        partitioning,
                    })
                }
                other => {
                    return Err(err(
                        format!("sinks.{name}.type"),
                        format!("expected `iceberg`, `parquet` or `json`, got `{other}`"),
                    ))
                }
            };
            if s.roll_interval_secs == 0 {
                return Err(err(
                    format!("sinks.{name}.roll_interval_secs"),
                    "must be at least 1".into(),
                ));
            }
            if s.roll_size_mb > MAX_MB {
                return Err(err(
                    format!("sinks.{name}.roll_size_mb"),
                    format!("must be at most {MAX_MB} (16 TiB)"),
                ));
            }
            if s.roll_size_mb == 0 {
                return Err(err(
                    format!("sinks.{name}.roll_size_mb"),
                    "must be at least 1".into(),
                ));
            }
            for (key, value) in [
                ("roll_rows", s.roll_rows),
                ("row_group_rows", s.row_group_rows.map(|n| n as u64)),
            ] {
                if value == Some(0) {
                    return Err(err(
                        format!("sinks.{name}.{key}"),
                        "must be at least 1".into(),
                    ));
                }
            }
            sinks.push(SinkConfig {
                name,
                target,
                partition_by,
                retention,
                compaction: s.compaction != Some(false),
                full_compaction_every: s.full_compaction_interval_secs.map_or(
                    pipe_sink::table::FULL_COMPACTION_EVERY,
                    std::time::Duration::from_secs,
                ),
                roll_interval: std::time::Duration::from_secs(s.roll_interval_secs),
                roll_bytes: s.roll_size_mb * 1024 * 1024,
                roll_rows: s.roll_rows,
                compression: s.compression.unwrap_or_default(),
                row_group_rows,
                target_file_bytes,
                bloom_filter_columns,
                sort_by,
            });
        }
        let mut pipelines = Vec::new();
        let mut tables = BTreeMap::new();
        for (name, p) in file.pipelines {
            check_name(&format!("pipelines.{name}"), &name)?;
            if name.contains("__") {
                return Err(err(
                    format!("pipelines.{name}"),
                    "names with `__` are reserved for pipelines pipe adds (such as `<stream>__quarantine`)".into(),
                ));
            }
            if p.sql.trim().is_empty() {
                return Err(err(
                    format!("pipelines.{name}.sql"),
                    "must not be empty".into(),
                ));
            }
            let quarantine = table_name(
                &format!("pipelines.{name}.quarantine_table"),
                p.quarantine_table
                    .unwrap_or_else(|| format!("default.{name}_failed")),
            )?;
            let start = match &p.start {
                Some(text) => text
                    .parse()
                    .map_err(|e| Error::Config(format!("`pipelines.{name}.start`: {e}")))?,
                None => StartAt::Earliest,
            };
            pipelines.push(PipelineConfig {
                name,
                sql: p.sql,
                quarantine,
                start,
            });
        }
        for s in &streams {
            if let Some((ns, t)) = &s.quarantine {
                tables.insert(
                    (ns.clone(), t.clone()),
                    format!("the quarantine of stream `{}`", s.name),
                );
            }
        }
        for p in &pipelines {
            let (ns, t) = &p.quarantine;
            if let Some(other) = tables.insert(
                (ns.clone(), t.clone()),
                format!("the failed rows of pipeline `{}`", p.name),
            ) {
                return Err(err(
                    format!("pipelines.{}.quarantine_table", p.name),
                    format!("`{ns}.{t}` is already the table of {other}"),
                ));
            }
        }
        let mut locations = BTreeMap::new();
        for s in &sinks {
            match &s.target {
                SinkTarget::Table { namespace, table } => {
                    if let Some(other) = tables.insert(
                        (namespace.clone(), table.clone()),
                        format!("sink `{}`", s.name),
                    ) {
                        return Err(err(
                            format!("sinks.{}.table", s.name),
                            format!("`{namespace}.{table}` is already the table of {other}"),
                        ));
                    }
                }
                SinkTarget::Files(f) => {
                    if let Some(other) = locations.insert(f.location.clone(), s.name.clone()) {
                        return Err(err(
                            format!("sinks.{}.path", s.name),
                            format!("`{}` is already the path of sink `{other}`: give each file sink a folder of its own", f.location),
                        ));
                    }
                }
            }
        }
        let body_timeout = match file.body_timeout_secs {
            Some(0) => return Err(err("body_timeout_secs".into(), "must be at least 1".into())),
            Some(secs) => std::time::Duration::from_secs(secs),
            None => pipe_ingest::http::DEFAULT_BODY_TIMEOUT,
        };
        let store_timeout = match file.store_timeout_secs {
            Some(0) => {
                return Err(err(
                    "store_timeout_secs".into(),
                    "must be at least 1".into(),
                ))
            }
            Some(secs) => std::time::Duration::from_secs(secs),
            None => DEFAULT_STORE_TIMEOUT,
        };
        let query = query_config(file.query.unwrap_or_default())?;
        let iceberg = super::iceberg::iceberg_config(file.iceberg.unwrap_or_default())?;
        let mut admin_token_digests = token_digests(
            "admin.auth_token_sha256",
            &file.admin.unwrap_or_default().auth_token_sha256,
        )?;
        // A token from the environment or a flag is accepted besides the
        // file's: the operator's own, next to the team's.
        if let Some(token) = &overrides.admin_token {
            if token.trim().is_empty() {
                return Err(err(
                    "--admin-token".into(),
                    "the token is empty (`PIPE_ADMIN_TOKEN` or the flag)".into(),
                ));
            }
            admin_token_digests.push(pipe_ingest::http::token_digest(token.trim()));
        }
        Ok(Config {
            query,
            iceberg,
            admin_token_digests,
            data_dir,
            listen,
            body_timeout,
            store_timeout,
            catalog,
            streams,
            sinks,
            pipelines,
        })
    }

    /// The sink named `name`.
    pub fn sink(&self, name: &str) -> Option<&SinkConfig> {
        self.sinks.iter().find(|s| s.name == name)
    }
}

/// `[query]`, checked, with its defaults.
fn query_config(q: QueryFile) -> Result<QueryConfig> {
    let at_least = |key: &str, value: Option<u64>, min: u64, default: u64| match value {
        Some(v) if v < min => Err(Error::Config(format!(
            "`query.{key}`: must be at least {min}, got {v}"
        ))),
        Some(v) => Ok(v),
        None => Ok(default),
    };
    let memory = at_least(
        "memory_limit_bytes",
        q.memory_limit_bytes.map(|v| v as u64),
        1 << 20,
        1 << 30,
    )?;
    Ok(QueryConfig {
        enabled: q.enabled.unwrap_or(true),
        token_digests: token_digests("query.auth_token_sha256", &q.auth_token_sha256)?,
        memory_limit_bytes: usize::try_from(memory).unwrap_or(usize::MAX),
        max_spill_bytes: q.max_spill_bytes.unwrap_or(4 << 30),
        max_timeout: std::time::Duration::from_secs(at_least(
            "max_timeout_secs",
            q.max_timeout_secs,
            1,
            300,
        )?),
        max_concurrent: at_least("max_concurrent", q.max_concurrent.map(|v| v as u64), 1, 4)?
            as usize,
        max_result_rows: at_least(
            "max_result_rows",
            q.max_result_rows.map(|v| v as u64),
            1,
            100_000,
        )? as usize,
        max_value_bytes: usize::try_from(at_least(
            "max_value_bytes",
            q.max_value_bytes.map(|v| v as u64),
            1 << 10,
            64 << 20,
        )?)
        .unwrap_or(usize::MAX),
        max_unflushed_bytes: at_least("max_unflushed_bytes", q.max_unflushed_bytes, 1, 1 << 30)?,
    })
}

/// The SQL catalog's URI: the default SQLite file under `data_dir`, a
/// `sqlite:` path relative to the file's folder, or `postgres://…`.
fn sql_catalog_uri(uri: Option<String>, base: &Path, data_dir: &Path) -> Result<String> {
    let err = |key: String, message: String| Error::Config(format!("`{key}`: {message}"));
    Ok(match uri {
        None => sqlite_uri(&data_dir.join("catalog.db")),
        Some(uri) => match uri.strip_prefix("sqlite:") {
            Some(path) => {
                let path = path.trim_start_matches("//");
                let (path, _) = path.split_once('?').unwrap_or((path, ""));
                sqlite_uri(&absolute(base, Path::new(path)))
            }
            None if uri.starts_with("postgres") => uri,
            None => {
                return Err(err(
                    "catalog.uri".into(),
                    format!("expected `sqlite:PATH` or `postgres://…`, got `{uri}`"),
                ))
            }
        },
    })
}

/// Refuses names that are not letters, digits, `_` and `-`.
pub(crate) fn check_name(key: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "`{key}`: names use letters, digits, `_` and `-` (at most 128), got `{name}`"
        )))
    }
}

fn absolute(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn file_url(p: &Path) -> String {
    format!("file://{}", p.display())
}

fn sqlite_uri(p: &Path) -> String {
    format!("sqlite:{}?mode=rwc", p.display())
}

/// Splits a `namespace.table` setting.
fn table_name(key: &str, table: String) -> Result<(String, String)> {
    let Some((ns, t)) = table.rsplit_once('.') else {
        return Err(Error::Config(format!(
            "`{key}`: expected `namespace.table`, got `{table}`"
        )));
    };
    check_name(key, t)?;
    Ok((ns.to_string(), t.to_string()))
}
