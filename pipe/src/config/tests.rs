//! `pipe.toml` parsed and resolved.

use super::*;
use pipe_sink::{CatalogKind, FileFormat};

fn resolve(text: &str) -> Result<Config> {
    let file: ConfigFile = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
    Config::resolve(file, Path::new("/etc/pipe"), &Overrides::default())
}

#[test]
fn defaults_live_next_to_the_file() {
    let c = resolve(
        r#"
        [sinks.s]
        table = "t"
        [pipelines.p]
        sql = "INSERT INTO s SELECT * FROM x"
        "#,
    )
    .unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/etc/pipe/data"));
    assert_eq!(
        c.catalog.warehouse.location,
        "file:///etc/pipe/data/warehouse"
    );
    assert_eq!(
        c.catalog.kind,
        CatalogKind::Sql {
            uri: "sqlite:/etc/pipe/data/catalog.db?mode=rwc".into()
        }
    );
    assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
    let q = &c.query;
    assert_eq!(
        (q.memory_limit_bytes, q.max_spill_bytes, q.max_concurrent),
        (1 << 30, 4 << 30, 4)
    );
    assert_eq!((q.max_timeout.as_secs(), q.max_result_rows), (300, 100_000));
    assert!(
        matches!(&c.sinks[0].target, SinkTarget::Table { namespace, .. } if namespace == "default")
    );
    assert_eq!(c.sinks[0].roll_interval.as_secs(), 300);
}

#[test]
fn file_sinks_default_under_the_warehouse() {
    let c = resolve(
        r#"
        [warehouse]
        location = "s3://bucket/wh"
        s3 = { endpoint = "http://127.0.0.1:9000", path_style = true }
        [sinks.raw]
        type = "json"
        compression = "gzip"
        [sinks.local]
        type = "parquet"
        path = "out"
        partitioning = ""
        "#,
    )
    .unwrap();
    let SinkTarget::Files(raw) = &c.sinks[1].target else {
        panic!("{:?}", c.sinks[1]);
    };
    assert_eq!(raw.location, "s3://bucket/wh/raw");
    assert_eq!(raw.format, FileFormat::Json { gzip: true });
    assert_eq!(raw.partitioning, "year=%Y/month=%m/day=%d");
    assert!(raw.s3.path_style);
    // A relative path is a folder of the warehouse, here in the bucket.
    let SinkTarget::Files(local) = &c.sinks[0].target else {
        panic!("{:?}", c.sinks[0]);
    };
    assert_eq!(local.location, "s3://bucket/wh/out");
    assert!(local.s3.path_style);
    assert_eq!(local.partitioning, "");
    assert!(matches!(
        local.format,
        FileFormat::Parquet {
            codec: Codec::Zstd,
            ..
        }
    ));
}

#[test]
fn overrides_win_over_the_file() {
    let file: ConfigFile = toml::from_str("listen = \"127.0.0.1:1\"\ndata_dir = \"d\"").unwrap();
    let c = Config::resolve(
        file,
        Path::new("/x"),
        &Overrides {
            listen: Some("127.0.0.1:2".parse().unwrap()),
            admin_token: Some("t0ken".into()),
            ..Overrides::default()
        },
    )
    .unwrap();
    assert_eq!(c.listen.port(), 2);
    assert_eq!(c.data_dir, PathBuf::from("/x/d"));
    assert_eq!(
        c.admin_token_digests,
        [pipe_ingest::http::token_digest("t0ken")]
    );
}

#[test]
fn errors_name_the_key() {
    for (text, want) in [
        (
            "[sinks.s]\ntable = \"t\"\nroll_interval_secs = 0",
            "`sinks.s.roll_interval_secs`: must be at least 1",
        ),
        (
            "[sinks.s]\ntable = \"t\"\ntype = \"kafka\"",
            "`sinks.s.type`: expected `iceberg`",
        ),
        (
            "[sinks.s]\ntable = \"t\"\nbogus = 1",
            "unknown field `bogus`",
        ),
        (
            "[streams.a]\nschema_file = \"/nonexistent.json\"",
            "`streams.a.schema_file`: reading",
        ),
        ("[warehouse]\nlocation = \"gs://b\"", "`warehouse.location`"),
        ("[catalog]\nuri = \"mysql://x\"", "`catalog.uri`"),
        ("[streams.\"a b\"]", "`streams.a b`"),
        (
            "[sinks.a]\ntable = \"t\"\n[sinks.b]\ntable = \"t\"",
            "already the table of sink `a`",
        ),
        (
            "[streams.a]\nauth_token_sha256 = [\"abc\"]",
            "`streams.a.auth_token_sha256[0]`: expected 64 hex digits",
        ),
        ("[streams.a]\ncors_origins = [\"example.com\"]", "`streams.a.cors_origins`"),
        ("[streams.a]\nmax_request_bytes = 0", "`streams.a.max_request_bytes`: must be at least 1"),
        (
            "[streams.a]\nunknown_fields = \"keep\"",
            "`streams.a.unknown_fields`: invalid stream schema: unknown fields can only be kept",
        ),
        ("[streams.a]\nunknown_fields = \"ignore\"", "unknown variant `ignore`"),
        (
            "[streams.a]\nbuffer_segment_mb = 64\nmax_buffer_mb = 100",
            "`streams.a.max_buffer_mb`: must be at least twice",
        ),
        (
            "[streams.a]\nquarantine_table = \"q.t\"",
            "set `invalid_events = \"quarantine\"`",
        ),
        ("[pipelines.a__quarantine]\nsql = \"x\"", "reserved for pipelines pipe adds"),
        (
            "[pipelines.p]\nsql = \"x\"\nquarantine_table = \"t\"",
            "`pipelines.p.quarantine_table`: expected `namespace.table`",
        ),
        (
            "[sinks.s]\ntable = \"p_failed\"\n[pipelines.p]\nsql = \"x\"",
            "`sinks.s.table`: `default.p_failed` is already the table of the failed rows of pipeline `p`",
        ),
        (
            "[streams.a]\nschema_file = \"a\"\njson_schema_file = \"b\"",
            "`streams.a`: set `schema_file` or `json_schema_file`, not both",
        ),
        ("body_timeout_secs = 0", "`body_timeout_secs`: must be at least 1"),
        (
            "[sinks.s]\ntable = \"t\"\nroll_size_mb = 9223372036854775807",
            "`sinks.s.roll_size_mb`: must be at most 16777216 (16 TiB)",
        ),
        ("[query]\nmax_concurrent = 0", "`query.max_concurrent`: must be at least 1, got 0"),
        (
            "[query]\nmemory_limit_bytes = 1000",
            "`query.memory_limit_bytes`: must be at least 1048576",
        ),
        ("[query]\nmax_timeout_secs = 0", "`query.max_timeout_secs`: must be at least 1"),
        ("[query]\nmax_result_rows = 0", "`query.max_result_rows`: must be at least 1"),
        (
            "[sinks.s]\ntable = \"t\"\nrow_group_rows = 0",
            "`sinks.s.row_group_rows`: must be at least 1",
        ),
        ("[sinks.s]\nroll_size_mb = 1", "`sinks.s.table`: an Iceberg sink needs a table name"),
        (
            "[sinks.s]\ntable = \"t\"\npath = \"x\"",
            "`sinks.s.path`: only file sinks",
        ),
        (
            "[sinks.s]\ntype = \"json\"\ncompression = \"zstd\"",
            "`sinks.s.compression`: JSON files take `gzip` or `none`",
        ),
        (
            "[sinks.s]\ntype = \"parquet\"\ntable = \"t\"",
            "`sinks.s.table`: a `parquet` sink writes files under `path`",
        ),
        (
            "[sinks.a]\ntype = \"json\"\npath = \"out\"\n[sinks.b]\ntype = \"parquet\"\npath = \"out\"",
            "`sinks.b.path`: `file:///etc/pipe/data/warehouse/out` is already the path of sink `a`: give each file sink a folder of its own",
        ),
        ("[sinks.s]\ntype = \"parquet\"\npath = \"gs://b\"", "`sinks.s.path`: expected a folder"),
        (
            "[sinks.s]\ntype = \"json\"\npath = \"/var/spool/cron\"",
            "`sinks.s.path`: `/var/spool/cron` is outside the warehouse (`file:///etc/pipe/data/warehouse`)",
        ),
        (
            "file_sink_roots = [\"/srv/out\"]\n[sinks.s]\ntype = \"json\"\npath = \"/srv/other\"",
            "and `file_sink_roots` (file:///srv/out)",
        ),
        ("[sinks.s]\ntype = \"json\"\npath = \"../x\"", "`sinks.s.path`: `..` is not allowed"),
        (
            "[sinks.s]\ntype = \"json\"\npartitioning = \"../%Y\"",
            "`sinks.s.partitioning`: folders stay inside",
        ),
        ("file_sink_roots = [\"gs://b\"]", "`file_sink_roots[0]`: expected a folder"),
        (
            "[sinks.s]\ntable = \"t\"\npartition_by = [\"day(ts)\", \"bucket(x)\"]",
            "`sinks.s.partition_by[1]`: partition field `bucket(x)`: this transform takes a number and a column",
        ),
        (
            "[sinks.s]\ntype = \"parquet\"\nbloom_filter_columns = [\"id\"]",
            "`sinks.s.bloom_filter_columns`: bloom filters are written by Iceberg sinks only",
        ),
        (
            "[sinks.s]\ntable = \"t\"\nbloom_filter_columns = [\"a.b\"]",
            "`sinks.s.bloom_filter_columns`: `a.b` is not a top-level column name",
        ),
        (
            "[sinks.s]\ntable = \"t\"\ntarget_file_size_mb = 0",
            "`sinks.s.target_file_size_mb`: must be 1 to 1048576",
        ),
        (
            "[sinks.s]\ntype = \"parquet\"\ntarget_file_size_mb = 64",
            "`sinks.s.target_file_size_mb`: file sinks write one file per folder",
        ),
        (
            "[sinks.s]\ntype = \"json\"\nsort_by = [\"id\"]",
            "`sinks.s.sort_by`: a sort order belongs to Iceberg tables",
        ),
        (
            "[sinks.s]\ntable = \"t\"\nsort_by = [\"id\", \"ts SIDEWAYS\"]",
            "`sinks.s.sort_by[1]`: sort column `ts SIDEWAYS`: after the column: ASC or DESC",
        ),
        (
            "[sinks.s]\ntype = \"json\"\npartition_by = [\"day(ts)\"]",
            "`sinks.s.partition_by`: file sinks set their folders with `partitioning`",
        ),
        ("[catalog]\ntype = \"rest\"", "`catalog.uri`: a REST catalog needs its `http://…`"),
        ("[catalog]\ntoken = \"x\"", "`catalog.token`: only a REST catalog"),
        ("[catalog]\ntype = \"glue\"", "`catalog.type`: expected `sql` or `rest`"),
        (
            "[sinks.s]\ntable = \"t\"\nsnapshot_retain_last = 20\nsnapshot_max_count = 5",
            "`sinks.s.snapshot_max_count`: 5 is below `snapshot_retain_last` (20)",
        ),
        (
            "[sinks.s]\ntable = \"t\"\nsnapshot_retain_last = 0",
            "`sinks.s.snapshot_retain_last`: must be at least 1",
        ),
    ] {
        let e = resolve(text).unwrap_err().to_string();
        assert!(e.contains(want), "{text}\n=> {e}");
    }
}

#[test]
fn s3_warehouse() {
    let c = resolve(
        r#"
        [warehouse]
        location = "s3://bucket/prefix/"
        s3 = { endpoint = "http://127.0.0.1:4566", region = "us-east-1", path_style = true }
        "#,
    )
    .unwrap();
    assert_eq!(c.catalog.warehouse.location, "s3://bucket/prefix");
    let props = c.catalog.storage_props();
    assert_eq!(props["s3.endpoint"], "http://127.0.0.1:4566");
    assert_eq!(props["s3.path-style-access"], "true");
}
