//! The warehouse's storage as the sinks and maintenance reach it: OpenDAL
//! operators for a `file://` folder or an `s3://` location, and what a
//! Parquet file weighs before compression.

use opendal::Operator;

use crate::catalog::S3Options;
use crate::{Error, Result};

/// The operator for a `file://` folder or an `s3://bucket/prefix`.
pub(crate) fn operator(location: &str, s3: &S3Options) -> Result<Operator> {
    use opendal::layers::RetryLayer;
    use opendal::services;
    let built = if let Some(folder) = location.strip_prefix("file://") {
        std::fs::create_dir_all(folder)
            .map_err(|e| Error::Config(format!("creating the sink folder {folder}: {e}")))?;
        Operator::new(services::Fs::default().root(folder)).map(|b| b.finish())
    } else if let Some(rest) = location.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let mut b = services::S3::default()
            .bucket(bucket)
            .root(&format!("/{prefix}"));
        if let Some(v) = &s3.endpoint {
            b = b.endpoint(v);
        }
        b = b.region(s3.region.as_deref().unwrap_or("us-east-1"));
        if let Some(v) = &s3.access_key_id {
            b = b.access_key_id(v);
        }
        if let Some(v) = &s3.secret_access_key {
            b = b.secret_access_key(v);
        }
        if let Some(v) = &s3.session_token {
            b = b.session_token(v);
        }
        if !s3.path_style {
            b = b.enable_virtual_host_style();
        }
        Operator::new(b).map(|b| b.finish())
    } else {
        return Err(Error::Config(format!(
            "sink path `{location}` must be a file:// folder or an s3:// location"
        )));
    };
    let op = built.map_err(|e| Error::Config(format!("sink path `{location}`: {e}")))?;
    Ok(op.layer(RetryLayer::new().with_jitter()))
}

/// What a Parquet file of `file_bytes` would weigh without its codec: its
/// size, less its column chunks' compressed size, plus their uncompressed
/// size (footer and headers count as they are).
pub fn size_before_compression(
    meta: &parquet::file::metadata::ParquetMetaData,
    file_bytes: u64,
) -> u64 {
    let (compressed, uncompressed) =
        meta.row_groups()
            .iter()
            .flat_map(|rg| rg.columns())
            .fold((0u64, 0u64), |(c, u), col| {
                (
                    c + col.compressed_size().max(0) as u64,
                    u + col.uncompressed_size().max(0) as u64,
                )
            });
    (file_bytes + uncompressed).saturating_sub(compressed)
}
