//! Where file sinks may write: inside the warehouse, or under a root the
//! operator lists in `pipe.toml`.
//!
//! A file sink creates folders, writes, moves and deletes files under its
//! `path`, as the server's user. Its definition may come from the admin
//! API, so the path is held to places the operator chose:
//!
//! ```text
//!  path                      resolves to                         allowed when
//!  (none)                    <warehouse>/<sink name>             always
//!  raw/events                <warehouse>/raw/events              always (inside the warehouse)
//!  /srv/exports/x, file://…  itself                              inside the warehouse or a root
//!  s3://bucket/x             itself                              inside the warehouse or a root
//!  anything with `..`        refused
//! ```
//!
//! The roots are the top-level `file_sink_roots` of `pipe.toml` (folders,
//! `file://` URLs or `s3://bucket/prefix`); `definitions.toml` and the admin
//! API cannot set them, so a definition made through the API can never
//! widen them. Local paths are compared after resolving symlinks in the
//! part that exists, so a link inside the warehouse that points elsewhere
//! does not open a way out. (The check runs when a definition is made and
//! at every start; a link made later by someone with access to the
//! machine is outside what a definition can do.)

use std::path::{Component, Path, PathBuf};

use crate::{Error, Result};

/// The places file sinks may write: the warehouse and the operator's roots.
#[derive(Debug, Clone)]
pub struct FileSinkRoots {
    warehouse: Place,
    roots: Vec<Place>,
}

/// A folder on this machine (its path with symlinks resolved) or a prefix
/// in a bucket.
#[derive(Debug, Clone, PartialEq)]
enum Place {
    Local(PathBuf),
    S3 { bucket: String, keys: Vec<String> },
}

impl Place {
    /// The location as sinks take it: `file:///…` or `s3://bucket/…`.
    fn location(&self) -> String {
        match self {
            Place::Local(path) => format!("file://{}", path.display()),
            Place::S3 { bucket, keys } if keys.is_empty() => format!("s3://{bucket}"),
            Place::S3 { bucket, keys } => format!("s3://{bucket}/{}", keys.join("/")),
        }
    }

    /// Whether `self` is `other` or inside it.
    fn within(&self, other: &Place) -> bool {
        match (self, other) {
            (Place::Local(a), Place::Local(b)) => a.starts_with(b),
            (Place::S3 { bucket, keys }, Place::S3 { bucket: b, keys: k }) => {
                bucket == b && keys.starts_with(k)
            }
            _ => false,
        }
    }

    /// `self` with the relative `path` appended.
    fn join(&self, path: &str) -> Place {
        match self {
            Place::Local(dir) => Place::Local(dir.join(path)),
            Place::S3 { bucket, keys } => Place::S3 {
                bucket: bucket.clone(),
                keys: keys
                    .iter()
                    .cloned()
                    .chain(
                        path.split('/')
                            .filter(|k| !k.is_empty() && *k != ".")
                            .map(String::from),
                    )
                    .collect(),
            },
        }
    }
}

fn err(key: &str, message: String) -> Error {
    Error::Config(format!("`{key}`: {message}"))
}

/// Parses `s3://bucket/prefix` (or `s3a://`), refusing `.` and `..`.
fn s3_place(key: &str, url: &str) -> Result<Place> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or_default();
    let mut parts = rest.split('/').filter(|p| !p.is_empty());
    let bucket = parts.next().unwrap_or_default().to_string();
    if bucket.len() < 3 {
        return Err(err(
            key,
            format!("expected `s3://bucket/prefix`, got `{url}`"),
        ));
    }
    let keys: Vec<String> = parts.map(String::from).collect();
    if keys.iter().any(|k| k == "." || k == "..") {
        return Err(err(
            key,
            format!("`.` and `..` are not allowed, got `{url}`"),
        ));
    }
    Ok(Place::S3 { bucket, keys })
}

/// Refuses `..` in a path (an absolute one, or one relative to a place
/// pipe chooses): there is no way back up.
fn no_parent(key: &str, path: &Path) -> Result<()> {
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(err(
            key,
            format!("`..` is not allowed, got `{}`", path.display()),
        ));
    }
    Ok(())
}

/// `path` (absolute, without `..`) with symlinks resolved as far as it
/// exists: its deepest existing ancestor made canonical, the rest appended.
fn real_path(key: &str, path: &Path) -> Result<PathBuf> {
    let mut existing = path;
    let mut rest = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(real) => return Ok(rest.iter().rev().fold(real, |p, name| p.join(name))),
            Err(_) if existing.symlink_metadata().is_ok() => {
                return Err(err(
                    key,
                    format!(
                        "`{}` is a symlink to nothing that exists",
                        existing.display()
                    ),
                ))
            }
            Err(_) => match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_os_string());
                    existing = parent;
                }
                _ => return Ok(path.to_path_buf()),
            },
        }
    }
}

/// A local place from an absolute path.
fn local_place(key: &str, path: &Path) -> Result<Place> {
    no_parent(key, path)?;
    Ok(Place::Local(real_path(key, path)?))
}

impl FileSinkRoots {
    /// The warehouse at `warehouse` (`file:///…` or `s3://…`, as resolved)
    /// and `roots`, the `file_sink_roots` of the file at `base`.
    pub fn new(warehouse: &str, roots: &[String], base: &Path) -> Result<FileSinkRoots> {
        let warehouse = match warehouse.strip_prefix("file://") {
            Some(path) => local_place("warehouse.location", Path::new(path))?,
            None => s3_place("warehouse.location", warehouse)?,
        };
        let roots = roots
            .iter()
            .enumerate()
            .map(|(i, root)| {
                let key = format!("file_sink_roots[{i}]");
                if root.starts_with("s3://") || root.starts_with("s3a://") {
                    return s3_place(&key, root);
                }
                if root.contains("://") && !root.starts_with("file://") {
                    return Err(err(
                        &key,
                        format!("expected a folder, `file://…` or `s3://…`, got `{root}`"),
                    ));
                }
                let path = Path::new(root.strip_prefix("file://").unwrap_or(root));
                no_parent(&key, path)?;
                local_place(&key, &base.join(path))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(FileSinkRoots { warehouse, roots })
    }

    /// Refuses a table `location` (`file://…`, `s3://…` or an absolute
    /// path) outside the warehouse, or with `..`: what a client of the
    /// Iceberg REST catalog may make a table in (`key` names the field).
    pub fn in_warehouse(&self, key: &str, location: &str) -> Result<()> {
        let place = if location.starts_with("s3://") || location.starts_with("s3a://") {
            s3_place(key, location)?
        } else if location.contains("://") && !location.starts_with("file://") {
            return Err(err(
                key,
                format!("expected `file://…` or `s3://…`, got `{location}`"),
            ));
        } else {
            let path = Path::new(location.strip_prefix("file://").unwrap_or(location));
            if !path.is_absolute() {
                return Err(err(
                    key,
                    format!("expected an absolute location, got `{location}`"),
                ));
            }
            local_place(key, path)?
        };
        if place != self.warehouse && place.within(&self.warehouse) {
            return Ok(());
        }
        Err(err(
            key,
            format!(
                "`{location}` is outside the warehouse (`{}`): tables live in it",
                self.warehouse.location()
            ),
        ))
    }

    /// The location of file sink `sink` whose `path` setting is `path`:
    /// `file:///…` or `s3://…`, or an error naming `sinks.<sink>.path`.
    pub fn resolve(&self, sink: &str, path: Option<&str>) -> Result<String> {
        let key = format!("sinks.{sink}.path");
        let place = match path {
            None => self.warehouse.join(sink),
            Some(p) if p.starts_with("s3://") || p.starts_with("s3a://") => s3_place(&key, p)?,
            Some(p) if p.contains("://") && !p.starts_with("file://") => {
                return Err(err(
                    &key,
                    format!("expected a folder, `file://…` or `s3://…`, got `{p}`"),
                ))
            }
            Some(p) => {
                let local = Path::new(p.strip_prefix("file://").unwrap_or(p));
                no_parent(&key, local)?;
                if local.is_absolute() {
                    local_place(&key, local)?
                } else {
                    match self.warehouse.join(p) {
                        Place::Local(path) => local_place(&key, &path)?,
                        s3 => s3,
                    }
                }
            }
        };
        if place == self.warehouse {
            return Err(err(
                &key,
                "a file sink writes into a folder of the warehouse, not the warehouse itself"
                    .into(),
            ));
        }
        if place.within(&self.warehouse) || self.roots.iter().any(|r| place.within(r)) {
            return Ok(place.location());
        }
        let roots: Vec<String> = self.roots.iter().map(Place::location).collect();
        Err(err(
            &key,
            format!(
                "`{}` is outside the warehouse (`{}`){}: use a path relative to the warehouse, \
                 or have the operator add a folder above it to `file_sink_roots` in pipe.toml",
                path.unwrap_or_default(),
                self.warehouse.location(),
                if roots.is_empty() {
                    String::new()
                } else {
                    format!(" and `file_sink_roots` ({})", roots.join(", "))
                },
            ),
        ))
    }
}

/// Refuses a `partitioning` template that could climb out of the sink's
/// folder: `..` or a leading `/`.
pub fn check_partitioning(sink: &str, template: &str) -> Result<()> {
    let climbs = template.starts_with('/') || template.split('/').any(|part| part == "..");
    if climbs {
        return Err(err(
            &format!("sinks.{sink}.partitioning"),
            format!(
                "folders stay inside the sink's path: no `..` or leading `/`, got `{template}`"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(roots: &[&str]) -> (tempfile::TempDir, FileSinkRoots) {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = dir.path().join("data/warehouse");
        let roots: Vec<String> = roots.iter().map(|r| r.to_string()).collect();
        let r = FileSinkRoots::new(
            &format!("file://{}", warehouse.display()),
            &roots,
            dir.path(),
        )
        .unwrap();
        (dir, r)
    }

    fn real(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().canonicalize().unwrap()
    }

    #[test]
    fn relative_paths_and_the_default_are_inside_the_warehouse() {
        let (dir, r) = local(&[]);
        let wh = real(&dir).join("data/warehouse");
        assert_eq!(
            r.resolve("s", None).unwrap(),
            format!("file://{}/s", wh.display())
        );
        assert_eq!(
            r.resolve("s", Some("raw/events/")).unwrap(),
            format!("file://{}/raw/events", wh.display())
        );
        let inside = format!("{}/exports", wh.display());
        assert_eq!(
            r.resolve("s", Some(&inside)).unwrap(),
            format!("file://{inside}")
        );
        assert_eq!(
            r.resolve("s", Some(&format!("file://{inside}"))).unwrap(),
            format!("file://{inside}")
        );
    }

    #[test]
    fn a_way_out_is_refused_with_the_key_and_what_to_do() {
        let (dir, r) = local(&[]);
        for path in [
            "/etc/cron.d",
            "file:///root/.ssh",
            "../buffer",
            "a/../../x",
            ".",
        ] {
            let e = r.resolve("s", Some(path)).unwrap_err().to_string();
            assert!(e.contains("`sinks.s.path`"), "{path}: {e}");
        }
        let e = r.resolve("s", Some("/etc/cron.d")).unwrap_err().to_string();
        assert!(e.contains("outside the warehouse"), "{e}");
        assert!(e.contains("`file_sink_roots` in pipe.toml"), "{e}");
        let e = r.resolve("s", Some("a/../../x")).unwrap_err().to_string();
        assert!(e.contains("`..` is not allowed"), "{e}");
        // A sibling whose name starts like the warehouse is not inside it.
        let sibling = format!("{}/data/warehouse2", real(&dir).display());
        assert!(r.resolve("s", Some(&sibling)).is_err());
    }

    #[test]
    fn roots_let_the_operator_allow_more() {
        let (dir, r) = local(&["exports", "s3://bucket/out"]);
        let exports = real(&dir).join("exports");
        let under = format!("{}/daily", exports.display());
        assert_eq!(
            r.resolve("s", Some(&under)).unwrap(),
            format!("file://{under}")
        );
        assert_eq!(
            r.resolve("s", Some("s3://bucket/out/a/")).unwrap(),
            "s3://bucket/out/a"
        );
        for outside in [
            "s3://bucket/outside",
            "s3://other/out",
            "s3://bucket/out/../x",
        ] {
            let e = r.resolve("s", Some(outside)).unwrap_err().to_string();
            assert!(e.contains("`sinks.s.path`"), "{outside}: {e}");
        }
        let e = r.resolve("s", Some("/srv")).unwrap_err().to_string();
        assert!(e.contains("s3://bucket/out"), "the roots are named: {e}");
        let bad = FileSinkRoots::new("s3://bucket/wh", &["../up".into()], Path::new("/x"));
        assert!(bad
            .unwrap_err()
            .to_string()
            .contains("`file_sink_roots[0]`"));
    }

    #[test]
    fn an_s3_warehouse_takes_relative_paths_as_keys() {
        let r = FileSinkRoots::new("s3://bucket/wh", &[], Path::new("/x")).unwrap();
        assert_eq!(r.resolve("raw", None).unwrap(), "s3://bucket/wh/raw");
        assert_eq!(
            r.resolve("s", Some("json/out")).unwrap(),
            "s3://bucket/wh/json/out"
        );
        assert_eq!(
            r.resolve("s", Some("s3://bucket/wh/x")).unwrap(),
            "s3://bucket/wh/x"
        );
        for outside in ["s3://bucket/wh2", "s3://bucket", "/tmp/x", "s3://bucket/wh"] {
            assert!(r.resolve("s", Some(outside)).is_err(), "{outside}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_out_of_the_warehouse_is_refused() {
        let (dir, r) = local(&[]);
        let wh = dir.path().join("data/warehouse");
        std::fs::create_dir_all(&wh).unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, wh.join("link")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("nothing"), wh.join("dangling")).unwrap();
        let e = r.resolve("s", Some("link/x")).unwrap_err().to_string();
        assert!(e.contains("outside the warehouse"), "{e}");
        let e = r.resolve("s", Some("dangling")).unwrap_err().to_string();
        assert!(e.contains("symlink to nothing"), "{e}");
        r.resolve("s", Some("real/x")).unwrap();
    }

    #[test]
    fn partitioning_stays_inside() {
        check_partitioning("s", "year=%Y/month=%m").unwrap();
        check_partitioning("s", "").unwrap();
        for bad in ["../%Y", "%Y/../../x", "/abs/%Y"] {
            let e = check_partitioning("s", bad).unwrap_err().to_string();
            assert!(e.contains("`sinks.s.partitioning`"), "{e}");
        }
    }
}
