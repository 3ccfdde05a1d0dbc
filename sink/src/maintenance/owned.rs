//! Which files a table's maintenance may delete: only those inside the
//! table's own location. A table names files it did not write when
//! another engine adds them (`add_files`, a hand-written manifest): a
//! data file of another table, or one outside the warehouse. Expiring the
//! snapshots that named them, or compacting them away, must not delete
//! them: they are left (and logged), as a purge leaves them.
//!
//! Paths are compared in one spelling ([`super::orphans::canonical`]),
//! local ones with symlinks resolved (`/proc/self/root/w` is `/w`), and a
//! path with a `..` segment is never inside.

use std::path::Path;

use super::orphans::canonical;

/// Whether `file` lies inside `location` (a table's location).
pub fn owns(location: &str, file: &str) -> bool {
    let (Some(location), Some(file)) = (resolved(location), resolved(file)) else {
        return false;
    };
    let location = location.trim_end_matches('/');
    file.starts_with(&format!("{location}/"))
}

/// Whether one location is the other or lies inside it (a location with a
/// `..` segment overlaps everything: where it points is not known).
pub fn overlap(a: &str, b: &str) -> bool {
    let (Some(a), Some(b)) = (resolved(a), resolved(b)) else {
        return true;
    };
    let (a, b) = (a.trim_end_matches('/'), b.trim_end_matches('/'));
    a == b || a.starts_with(&format!("{b}/")) || b.starts_with(&format!("{a}/"))
}

/// `path` canonical, with the symlinks of the longest existing ancestor of
/// a local path resolved; `None` with a `..` segment.
fn resolved(path: &str) -> Option<String> {
    let canonical = canonical(path);
    let rest = canonical.split_once("://").map_or("", |(_, r)| r);
    if rest.split('/').any(|segment| segment == "..") {
        return None;
    }
    let Some(local) = canonical.strip_prefix("file://") else {
        return Some(canonical);
    };
    let local = local.replace("/./", "/");
    let mut tail = Vec::new();
    let mut at = Path::new(&local);
    loop {
        if let Ok(mut real) = std::fs::canonicalize(at) {
            real.extend(tail.iter().rev());
            return Some(format!("file://{}", real.to_string_lossy()));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                tail.push(name.to_os_string());
                at = parent;
            }
            _ => return Some(format!("file://{local}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{overlap, owns};

    #[test]
    fn only_files_inside_the_location_are_owned() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        let t = format!("file://{}/ns/t", real.display());
        assert!(owns(&t, &format!("{t}/data/a.parquet")));
        assert!(owns(&t, &format!("{}/ns/t/data/a.parquet", real.display())));
        assert!(!owns(
            &t,
            &format!("{}/ns/t2/data/a.parquet", real.display())
        ));
        assert!(!owns(&t, &format!("{t}/../t2/data/a.parquet")));
        assert!(!owns(&t, "file:///etc/passwd"));
        if cfg!(target_os = "linux") {
            let via_proc = format!(
                "file:///proc/self/root{}/ns/t/data/a.parquet",
                real.display()
            );
            assert!(owns(&t, &via_proc), "a symlink to the same place");
            let elsewhere = format!("file:///proc/self/root{}/ns/u/a.parquet", real.display());
            assert!(!owns(&t, &elsewhere));
        }
        assert!(overlap("file:///w/a/t", "/w//a/t/data"));
        assert!(overlap("s3://b/w/t", "s3a://b/w/t"));
        assert!(!overlap("file:///w/a/t", "file:///w/a/t2"));
        assert!(
            overlap("file:///w/a/t", "file:///w/x/../a/t"),
            "`..`: unknown, refused"
        );
        assert!(owns("s3://b/w/t", "s3a://b/w/t/data/x.parquet"));
        assert!(!owns("s3://b/w/t", "s3://b/w/other/x.parquet"));
    }
}
