//! Direct tests of the control plane (see the module doc): a supervisor
//! running real streams, sinks and pipelines on a local warehouse, changed
//! through [`crate::control`] without HTTP.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::config::definitions::Definitions;
use crate::config::{Overrides, PipelineFile};

const V1: &str = "INSERT INTO k SELECT user_id, 'v1' AS version FROM s";
const V2: &str = "INSERT INTO k SELECT user_id, 'v2' AS version FROM s";

/// A server's running parts, without its HTTP: stream `s` from
/// `pipe.toml`, sink `k` and pipeline `p` from the API's definitions.
async fn running(dir: &Path) -> Arc<Supervisor> {
    std::fs::write(
        dir.join("s.json"),
        r#"{"fields":[{"name":"user_id","type":"string","required":true}]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("pipe.toml"),
        "data_dir = \"data\"\n[streams.s]\nschema_file = \"s.json\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(
        dir.join("data")
            .join(crate::config::definitions::DEFINITIONS_FILE),
        format!("[sinks.k]\ntable = \"versions\"\n\n[pipelines.p]\nsql = \"{V1}\"\n"),
    )
    .unwrap();
    let (definitions, config) =
        Definitions::load(&dir.join("pipe.toml"), &Overrides::default()).unwrap();
    let catalog = pipe_sink::open_catalog(&config.catalog).await.unwrap();
    let committer = pipe_sink::maintenance::Committer::open(&config.catalog)
        .await
        .unwrap();
    let supervisor = Arc::new(Supervisor::new(
        catalog,
        committer,
        definitions,
        config.clone(),
        tokio::runtime::Handle::current(),
    ));
    supervisor.start(&config, &["s"], &["p"]).await.unwrap();
    supervisor
}

fn stored_sql(supervisor: &Supervisor) -> String {
    supervisor.definitions.read().api().pipelines["p"]
        .sql
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_checked_stored_applied_and_recorded_or_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let supervisor = running(dir.path()).await;

    // Refused: nothing stored, the old SQL runs.
    let bad = update_pipeline(
        &supervisor,
        "p",
        Some("INSERT INTO k SELECT nope FROM s".into()),
        None,
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::InvalidInput, "{bad}");
    let file = update_pipeline(&supervisor, "nobody", Some(V2.into()), None, false)
        .await
        .unwrap_err();
    assert_eq!(file.kind(), ErrorKind::NotFound, "{file}");
    let moved = update_sink(
        &supervisor,
        "k",
        serde_json::from_value(json!({"table": "elsewhere"})).unwrap(),
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(moved.kind(), ErrorKind::InvalidInput, "{moved}");
    assert_eq!(stored_sql(&supervisor), V1);

    // Checked only; then the same definition: nothing to do.
    let dry = update_pipeline(&supervisor, "p", Some(V2.into()), None, true)
        .await
        .unwrap();
    assert!(matches!(dry, Outcome::DryRun(_)), "{dry:?}");
    assert_eq!(stored_sql(&supervisor), V1);
    let same = update_pipeline(&supervisor, "p", Some(V1.into()), None, false)
        .await
        .unwrap();
    assert!(matches!(same, Outcome::Unchanged), "{same:?}");

    // Applied: stored (in memory, on disk, on record) and running.
    let Outcome::Applied(change) = update_pipeline(&supervisor, "p", Some(V2.into()), None, false)
        .await
        .unwrap()
    else {
        panic!("applied");
    };
    assert_ne!(change.definition_before, change.definition_after);
    assert_eq!(stored_sql(&supervisor), V2);
    let config = supervisor.config();
    assert_eq!(
        config.pipelines.iter().find(|p| p.name == "p").unwrap().sql,
        V2
    );
    let on_disk = std::fs::read_to_string(
        dir.path()
            .join("data")
            .join(crate::config::definitions::DEFINITIONS_FILE),
    )
    .unwrap();
    assert!(on_disk.contains("'v2'"), "{on_disk}");
    let log = crate::config::changes::ChangeLog::new(&dir.path().join("data"));
    assert_eq!(log.newest(1)[0]["updated"], json!(["pipeline p"]));
    assert!(supervisor.pipeline("p").is_some());
    assert!(
        supervisor.problems().is_empty(),
        "{:?}",
        supervisor.problems()
    );
    assert!(supervisor.shutdown().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_made_and_deleted_store_only_what_runs() {
    let dir = tempfile::tempdir().unwrap();
    let supervisor = running(dir.path()).await;
    let file = |sql: &str| PipelineFile {
        sql: sql.into(),
        quarantine_table: None,
        start: None,
    };
    create_sink(
        &supervisor,
        "k2",
        serde_json::from_value(json!({"table": "second"})).unwrap(),
    )
    .await
    .unwrap();
    // SQL that does not plan: refused, not stored, not running.
    let bad = create_pipeline(&supervisor, "q", file("INSERT INTO k2 SELECT nope FROM s"))
        .await
        .unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::InvalidInput, "{bad}");
    assert!(!supervisor
        .definitions
        .read()
        .api()
        .pipelines
        .contains_key("q"));
    assert!(supervisor.pipeline("q").is_none());
    create_pipeline(&supervisor, "q", file("INSERT INTO k2 SELECT * FROM s"))
        .await
        .unwrap();
    assert!(supervisor.pipeline("q").is_some());
    // A sink a pipeline writes is not deleted; the pipeline is, then it.
    let written = delete_sink(&supervisor, "k2").await.unwrap_err();
    assert_eq!(written.kind(), ErrorKind::Conflict, "{written}");
    assert_eq!(
        delete_pipeline(&supervisor, "q", false).await.unwrap(),
        None
    );
    delete_sink(&supervisor, "k2").await.unwrap();
    let api = supervisor.definitions.read().api().clone();
    assert!(!api.pipelines.contains_key("q") && !api.sinks.contains_key("k2"));
    let log = crate::config::changes::ChangeLog::new(&dir.path().join("data"));
    let newest: Vec<_> = log.newest(4).into_iter().collect();
    assert_eq!(newest[0]["deleted"], json!(["sink k2"]));
    assert_eq!(newest[1]["deleted"], json!(["pipeline q"]));
    assert_eq!(newest[2]["created"], json!(["pipeline q"]));
    assert!(supervisor.shutdown().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_checks_the_whole_file_before_it_applies_any_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let supervisor = running(dir.path()).await;
    let toml = dir.path().join("pipe.toml");
    let head = "data_dir = \"data\"\n[streams.s]\nschema_file = \"s.json\"\n";

    // A new stream and pipeline, but the file drops `s`, which the API's
    // pipeline reads: refused whole, nothing starts.
    let added = "[streams.t]\nschema_file = \"s.json\"\n[sinks.kt]\ntable = \"t\"\n[pipelines.q]\nsql = \"INSERT INTO kt SELECT * FROM t\"\n";
    std::fs::write(&toml, format!("data_dir = \"data\"\n{added}")).unwrap();
    let e = reload(&supervisor, false).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(supervisor.stream("t").is_none() && supervisor.pipeline("q").is_none());
    assert!(supervisor.stream("s").is_some());

    // A name the API made: refused.
    std::fs::write(&toml, format!("{head}[sinks.k]\ntable = \"other\"\n")).unwrap();
    let e = reload(&supervisor, false).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");

    // Both kept: applied, owned by the file, and a second reload is empty.
    std::fs::write(&toml, format!("{head}{added}")).unwrap();
    let dry = reload(&supervisor, true).await.unwrap();
    assert_eq!(dry.pipelines_added, ["q"]);
    assert!(
        supervisor.pipeline("q").is_none(),
        "a dry run starts nothing"
    );
    let done = reload(&supervisor, false).await.unwrap();
    assert_eq!(
        (done.streams_added.as_slice(), done.sinks_added.as_slice()),
        (&["t".to_string()][..], &["kt".to_string()][..])
    );
    assert!(supervisor.pipeline("q").is_some() && supervisor.stream("t").is_some());
    let definitions = supervisor.definitions.read();
    assert_eq!(definitions.origin(Kind::Pipeline, "q"), Some(Origin::File));
    assert!(supervisor.config().pipelines.iter().any(|p| p.name == "q"));
    drop(definitions);
    assert!(reload(&supervisor, false).await.unwrap().is_empty());

    // Removed again: stopped after its last commit; the API's pipeline runs on.
    std::fs::write(&toml, head).unwrap();
    let done = reload(&supervisor, false).await.unwrap();
    assert_eq!(done.pipelines_removed, ["q"]);
    assert!(supervisor.pipeline("q").is_none() && supervisor.stream("t").is_none());
    assert!(supervisor.pipeline("p").is_some());
    assert_eq!(
        supervisor.definitions.read().origin(Kind::Stream, "t"),
        None
    );
}
