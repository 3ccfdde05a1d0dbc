//! Where streams, sinks and pipelines are defined, and how definitions made
//! while the server runs are kept.
//!
//! There are two sources:
//!
//! - **The file** (`pipe.toml`, see [`crate::config`]): written by the
//!   operator, reviewed, versioned. The server only reads it.
//! - **The admin API** (`pipe streams|sinks|pipelines create|delete`,
//!   `POST|DELETE /v1/{streams,sinks,pipelines}`): kept in
//!   `<data_dir>/definitions.toml`, in the same format as the file, with a
//!   stream's schema beside it in `<data_dir>/definitions/<stream>.schema.json`.
//!   It is written atomically (a new file, fsynced, renamed over the old)
//!   before the change takes effect, so a change the API answered with 201
//!   or 200 survives a crash and a restart.
//!
//! A name belongs to exactly one source, so the two never fight:
//!
//! - The API refuses to create a name the file defines (409), and to
//!   delete one (409: edit the file and reload it, `control::reload`).
//! - **The file wins** if both define a name, which happens when an
//!   operator moves a definition made with the CLI into the file: at start
//!   the file's definition is used, the API's copy is dropped from
//!   `definitions.toml` and a warning names it. The file wins because it is
//!   the operator's declared, reviewed state; the API only adds to it.
//!
//! Every change is validated as a whole: the new definition is merged with
//! every other and goes through the same checks as the file
//! ([`Config::resolve`]), so the API cannot create anything the file could
//! not hold.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::config::{Config, ConfigFile, Overrides, PipelineFile, SinkFile, StreamFile};
use crate::{Error, ErrorKind, Result};

/// The file the admin API keeps its definitions in, under the data dir.
pub const DEFINITIONS_FILE: &str = "definitions.toml";
/// The folder of the schemas of streams made through the admin API.
pub const SCHEMAS_DIR: &str = "definitions";

/// Definitions made through the admin API, as stored.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiDefinitions {
    #[serde(default)]
    pub streams: BTreeMap<String, StreamFile>,
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkFile>,
    #[serde(default)]
    pub pipelines: BTreeMap<String, PipelineFile>,
}

/// Which source a definition comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// `pipe.toml`.
    File,
    /// The admin API, kept in `definitions.toml`.
    Api,
}

/// What a definition is: a stream, a sink or a pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stream,
    Sink,
    Pipeline,
}

impl Kind {
    /// `stream`, `sink`, `pipeline`.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Stream => "stream",
            Kind::Sink => "sink",
            Kind::Pipeline => "pipeline",
        }
    }
}

/// Both sources, and how to resolve them into one [`Config`].
#[derive(Debug, Clone)]
pub struct Definitions {
    /// Where the file is (read again by a reload).
    path: PathBuf,
    file: ConfigFile,
    /// The file's server settings: every top-level key but the
    /// definitions (a reload refuses to change them).
    server: toml::Table,
    base: PathBuf,
    overrides: Overrides,
    api: ApiDefinitions,
    data_dir: PathBuf,
}

/// The file at `path`, with its server settings (see
/// [`Definitions::server_settings`]).
fn read_file(path: &Path) -> Result<(ConfigFile, toml::Table, PathBuf)> {
    let (file, base) = ConfigFile::read(path)?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("reading `{}`: {e}", path.display())))?;
    let mut server: toml::Table =
        toml::from_str(&text).map_err(|e| Error::Config(format!("`{}`: {e}", path.display())))?;
    for key in ["streams", "sinks", "pipelines"] {
        server.remove(key);
    }
    Ok((file, server, base))
}

impl Definitions {
    /// The data directory the file at `path` names (with `overrides`).
    pub fn data_dir_of(path: &Path, overrides: &Overrides) -> Result<PathBuf> {
        let (file, base) = ConfigFile::read(path)?;
        Ok(Config::resolve(file, &base, overrides)?.data_dir)
    }

    /// Reads the file at `path` and the API's definitions under its data
    /// dir; returns both and the merged, validated configuration.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<(Definitions, Config)> {
        let (file, server, base) = read_file(path)?;
        let file_only = Config::resolve(file.clone(), &base, overrides)?;
        let data_dir = file_only.data_dir.clone();
        let stored = data_dir.join(DEFINITIONS_FILE);
        let mut api = match std::fs::read_to_string(&stored) {
            Ok(text) => toml::from_str::<ApiDefinitions>(&text)
                .map_err(|e| Error::Config(format!("`{}`: {e}", stored.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ApiDefinitions::default(),
            Err(e) => {
                return Err(Error::Config(format!(
                    "reading `{}`: {e}",
                    stored.display()
                )))
            }
        };
        // The file wins: drop the API's copy of any name it defines.
        let mut shadowed = false;
        for (kind, names) in [
            (Kind::Stream, file.streams.keys().collect::<Vec<_>>()),
            (Kind::Sink, file.sinks.keys().collect()),
            (Kind::Pipeline, file.pipelines.keys().collect()),
        ] {
            for name in names {
                let removed = match kind {
                    Kind::Stream => api.streams.remove(name).is_some(),
                    Kind::Sink => api.sinks.remove(name).is_some(),
                    Kind::Pipeline => api.pipelines.remove(name).is_some(),
                };
                if removed {
                    shadowed = true;
                    warn!(
                        kind = kind.noun(),
                        name = %name,
                        file = %path.display(),
                        "defined in the file and through the admin API: the file's definition wins; the API's copy is dropped"
                    );
                }
            }
        }
        let mut definitions = Definitions {
            path: path.to_path_buf(),
            file,
            server,
            base,
            overrides: overrides.clone(),
            api,
            data_dir,
        };
        let config = definitions.resolve(&definitions.api)?;
        if shadowed {
            let api = definitions.api.clone();
            definitions.store(api)?;
        }
        Ok((definitions, config))
    }

    /// The source of the definition `name`, if there is one.
    pub fn origin(&self, kind: Kind, name: &str) -> Option<Origin> {
        let (in_file, in_api) = match kind {
            Kind::Stream => (
                self.file.streams.contains_key(name),
                self.api.streams.contains_key(name),
            ),
            Kind::Sink => (
                self.file.sinks.contains_key(name),
                self.api.sinks.contains_key(name),
            ),
            Kind::Pipeline => (
                self.file.pipelines.contains_key(name),
                self.api.pipelines.contains_key(name),
            ),
        };
        if in_file {
            Some(Origin::File)
        } else if in_api {
            Some(Origin::Api)
        } else {
            None
        }
    }

    /// The file's definitions as the server applied them.
    pub fn file(&self) -> &ConfigFile {
        &self.file
    }

    /// The file's server settings (everything but `[streams]`, `[sinks]`
    /// and `[pipelines]`).
    pub fn server_settings(&self) -> &toml::Table {
        &self.server
    }

    /// The file as it is on disk now, with these API definitions.
    pub fn reread(&self) -> Result<Definitions> {
        let (file, server, _) = read_file(&self.path)?;
        Ok(Definitions {
            file,
            server,
            ..self.clone()
        })
    }

    /// These definitions with `file` as the file's definitions.
    pub fn with_file(&self, file: ConfigFile) -> Definitions {
        Definitions {
            file,
            ..self.clone()
        }
    }

    /// These definitions with `server` as the file's server settings.
    pub fn with_server_settings(&self, server: toml::Table) -> Definitions {
        Definitions {
            server,
            ..self.clone()
        }
    }

    /// The definitions made through the API.
    pub fn api(&self) -> &ApiDefinitions {
        &self.api
    }

    /// The data dir (where `definitions.toml` lives).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Where the schema of API stream `name` is kept.
    pub fn schema_path(&self, stream: &str) -> PathBuf {
        self.data_dir
            .join(SCHEMAS_DIR)
            .join(format!("{stream}.schema.json"))
    }

    /// Refuses `name` when a definition of that kind already has it.
    pub fn check_new(&self, kind: Kind, name: &str) -> Result<()> {
        match self.origin(kind, name) {
            None => Ok(()),
            Some(Origin::File) => Err(conflict(format!(
                "{} `{name}` already exists (defined in the definitions file)",
                kind.noun()
            ))),
            Some(Origin::Api) => Err(conflict(format!("{} `{name}` already exists", kind.noun()))),
        }
    }

    /// Refuses to delete `name` unless the API made it.
    pub fn check_deletable(&self, kind: Kind, name: &str) -> Result<()> {
        match self.origin(kind, name) {
            Some(Origin::Api) => Ok(()),
            Some(Origin::File) => Err(conflict(format!(
                "{} `{name}` is defined in the definitions file: remove it there and reload the file (`pipe reload`)",
                kind.noun()
            ))),
            None => Err(Error::Remote(
                format!("unknown {} `{name}`", kind.noun()),
                ErrorKind::NotFound,
            )),
        }
    }

    /// The configuration with the API's definitions replaced by `api`,
    /// validated as a whole.
    pub fn resolve(&self, api: &ApiDefinitions) -> Result<Config> {
        let mut merged = self.file.clone();
        for (name, mut stream) in api.streams.clone() {
            stream.schema_file = stream.schema_file.map(|p| self.data_dir.join(p));
            stream.json_schema_file = stream.json_schema_file.map(|p| self.data_dir.join(p));
            merged.streams.insert(name, stream);
        }
        // A file sink's relative path is a folder of the warehouse, as in
        // the file; `file_sink_roots` stay the file's alone.
        merged.sinks.extend(api.sinks.clone());
        merged.pipelines.extend(api.pipelines.clone());
        Config::resolve(merged, &self.base, &self.overrides)
    }

    /// Makes `api` the stored API definitions: written to a new file,
    /// fsynced, then renamed over `definitions.toml`.
    pub fn store(&mut self, api: ApiDefinitions) -> Result<()> {
        let text = toml::to_string(&api)
            .map_err(|e| Error::Internal(format!("writing the definitions: {e}")))?;
        let header = "# Streams, sinks and pipelines made with `pipe … create` (the admin API).\n# pipe rewrites this file on every change; definitions in pipe.toml win over these.\n\n";
        write_durably(
            &self.data_dir.join(DEFINITIONS_FILE),
            format!("{header}{text}").as_bytes(),
        )?;
        self.api = api;
        Ok(())
    }
}

fn conflict(message: String) -> Error {
    Error::Remote(message, ErrorKind::Conflict)
}

/// Writes `bytes` to `path` so that after a crash it holds either its old
/// content or all of `bytes`.
pub fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let io = |e: std::io::Error| Error::Internal(format!("writing `{}`: {e}", path.display()));
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(file: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pipe.toml");
        std::fs::write(&path, file).unwrap();
        (dir, path)
    }

    fn stream() -> StreamFile {
        StreamFile {
            cors_origins: vec!["https://example.com".into()],
            ..StreamFile::default()
        }
    }

    #[test]
    fn api_definitions_survive_a_reload_and_join_the_file() {
        let (_dir, path) = setup("[streams.from_file]\n");
        let (mut defs, config) = Definitions::load(&path, &Overrides::default()).unwrap();
        assert_eq!(config.streams.len(), 1);
        let mut api = defs.api().clone();
        api.streams.insert("from_api".into(), stream());
        let merged = defs.resolve(&api).unwrap();
        assert_eq!(merged.streams.len(), 2);
        defs.store(api).unwrap();

        let (defs, config) = Definitions::load(&path, &Overrides::default()).unwrap();
        let names: Vec<&str> = config.streams.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["from_api", "from_file"]);
        assert_eq!(defs.origin(Kind::Stream, "from_api"), Some(Origin::Api));
        assert_eq!(defs.origin(Kind::Stream, "from_file"), Some(Origin::File));
        assert_eq!(defs.origin(Kind::Sink, "from_file"), None);
        let s = config
            .streams
            .iter()
            .find(|s| s.name == "from_api")
            .unwrap();
        assert_eq!(s.policy.cors_origins, ["https://example.com"]);
    }

    #[test]
    fn the_file_wins_and_the_api_copy_is_dropped() {
        let (dir, path) = setup("[streams.s]\n");
        let (mut defs, _) = Definitions::load(&path, &Overrides::default()).unwrap();
        let mut api = ApiDefinitions::default();
        api.streams.insert("t".into(), stream());
        defs.store(api).unwrap();
        // The operator moves `t` into the file.
        std::fs::write(&path, "[streams.s]\n[streams.t]\n").unwrap();
        let (defs, config) = Definitions::load(&path, &Overrides::default()).unwrap();
        assert_eq!(defs.origin(Kind::Stream, "t"), Some(Origin::File));
        let t = config.streams.iter().find(|s| s.name == "t").unwrap();
        assert!(t.policy.cors_origins.is_empty(), "the file's definition");
        let stored = std::fs::read_to_string(dir.path().join("data").join(DEFINITIONS_FILE));
        assert!(!stored.unwrap().contains("[streams.t]"));
    }

    #[test]
    fn names_belong_to_one_source() {
        let (_dir, path) = setup("[streams.s]\n");
        let (mut defs, _) = Definitions::load(&path, &Overrides::default()).unwrap();
        let e = defs.check_new(Kind::Stream, "s").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(e.to_string().contains("definitions file"), "{e}");
        let e = defs.check_deletable(Kind::Stream, "s").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        let e = defs.check_deletable(Kind::Sink, "nope").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let mut api = ApiDefinitions::default();
        api.streams.insert("t".into(), stream());
        defs.store(api).unwrap();
        assert_eq!(
            defs.check_new(Kind::Stream, "t").unwrap_err().kind(),
            ErrorKind::Conflict
        );
        defs.check_deletable(Kind::Stream, "t").unwrap();
        defs.check_new(Kind::Sink, "t").unwrap();
    }

    #[test]
    fn api_file_sinks_stay_inside_what_the_file_allows() {
        let (dir, path) = setup("file_sink_roots = [\"exports\"]\n");
        let (defs, config) = Definitions::load(&path, &Overrides::default()).unwrap();
        let sink = |p: &str| -> SinkFile {
            toml::from_str(&format!("type = \"json\"\npath = \"{p}\"")).unwrap()
        };
        let with = |p: &str| {
            let mut api = ApiDefinitions::default();
            api.sinks.insert("out".into(), sink(p));
            defs.resolve(&api)
        };
        let e = with("/etc").unwrap_err().to_string();
        assert!(
            e.contains("`sinks.out.path`") && e.contains("outside"),
            "{e}"
        );
        let exports = dir.path().canonicalize().unwrap().join("exports/x");
        with(&exports.display().to_string()).unwrap();
        let relative = with("rel").unwrap();
        let crate::config::SinkTarget::Files(f) = &relative.sink("out").unwrap().target else {
            panic!("a file sink");
        };
        assert_eq!(
            f.location,
            format!("{}/rel", config.catalog.warehouse.location)
        );
        // Stored definitions cannot carry roots of their own.
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        std::fs::write(
            dir.path().join("data").join(DEFINITIONS_FILE),
            "file_sink_roots = [\"/\"]\n",
        )
        .unwrap();
        let e = Definitions::load(&path, &Overrides::default()).unwrap_err();
        assert!(
            e.to_string().contains("unknown field `file_sink_roots`"),
            "{e}"
        );
    }

    #[test]
    fn a_bad_stored_file_is_a_clear_error() {
        let (dir, path) = setup("");
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        std::fs::write(
            dir.path().join("data").join(DEFINITIONS_FILE),
            "[streams.x]\nnope = 1\n",
        )
        .unwrap();
        let e = Definitions::load(&path, &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("definitions.toml"), "{e}");
    }
}
