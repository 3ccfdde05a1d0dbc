//! The Parquet compression codecs sinks write with.

use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use serde::{Deserialize, Serialize};

/// Parquet compression codecs a sink may use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    #[default]
    Zstd,
    Snappy,
    Gzip,
    Lz4,
    None,
}

impl Codec {
    pub(crate) fn parquet(self) -> Compression {
        match self {
            Codec::Zstd => {
                Compression::ZSTD(ZstdLevel::try_new(1).expect("1 is a valid zstd level"))
            }
            Codec::Snappy => Compression::SNAPPY,
            Codec::Gzip => Compression::GZIP(GzipLevel::default()),
            Codec::Lz4 => Compression::LZ4_RAW,
            Codec::None => Compression::UNCOMPRESSED,
        }
    }
}
