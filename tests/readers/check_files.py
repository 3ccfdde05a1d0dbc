"""Reads what a `pipe` file sink published, with DuckDB.

Lists the sink's location (a local folder or an S3 prefix, through
pyarrow's file system), copies S3 objects to a temporary folder (DuckDB's
S3 support is an extension downloaded from the internet, which tests cannot
reach), and reads the published files with DuckDB: `**/*.parquet` or
`**/*.json[.gz]`, Hive partitions from the folder names. Prints one JSON
object: {"n", "distinct", "ids": [...], "files": [published paths],
"partitions": [distinct year/month/day], "staging": [leftover staging
files], "columns": [...]}.
"""

import argparse
import json
import os
import sys
import tempfile
from urllib.parse import urlparse

import duckdb
from pyarrow import fs
from testenv import s3_filesystem


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--location", required=True, help="file:///folder or s3://bucket/prefix")
    p.add_argument("--format", required=True, choices=["parquet", "json"])
    p.add_argument("--column", required=True, help="the column of unique ids")
    p.add_argument("--s3-endpoint")
    args = p.parse_args()

    url = urlparse(args.location)
    if url.scheme == "s3":
        store = s3_filesystem(args.s3_endpoint)
        root = url.netloc + url.path
    else:
        store, root = fs.LocalFileSystem(), url.path
    infos = store.get_file_info(fs.FileSelector(root, recursive=True, allow_not_found=True))
    names = sorted(
        i.path[len(root):].lstrip("/") for i in infos if i.type == fs.FileType.File
    )
    published = [n for n in names if not n.startswith("_pipe/")]
    staging = [n for n in names if n.startswith("_pipe/") and "/staging/" in n]

    with tempfile.TemporaryDirectory() as tmp:
        if url.scheme == "s3":
            for n in published:
                target = os.path.join(tmp, n)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                # compression=None: copy the bytes as stored, .gz included.
                with store.open_input_stream(f"{root}/{n}", compression=None) as src, open(target, "wb") as dst:
                    dst.write(src.read())
            local = tmp
        else:
            local = root
        con = duckdb.connect()
        if not published:
            rows, columns = [], []
        else:
            if args.format == "parquet":
                rel = con.sql(
                    f"SELECT * FROM read_parquet('{local}/**/*.parquet', hive_partitioning = true)"
                )
            else:
                rel = con.sql(
                    f"SELECT * FROM read_json_auto('{local}/**/*.json*', hive_partitioning = true)"
                )
            columns = rel.columns
            # Every value as text: timestamps with a zone would need pytz.
            text = rel.project(", ".join(f'CAST("{c}" AS VARCHAR) AS "{c}"' for c in columns))
            rows = [dict(zip(columns, r)) for r in text.fetchall()]
    ids = [r[args.column] for r in rows]
    partitions = sorted({
        "/".join(f"{k}={r[k]}" for k in ("year", "month", "day") if k in r) for r in rows
    })
    json.dump(
        {
            "n": len(ids),
            "distinct": len(set(ids)),
            "ids": sorted(set(ids)),
            "files": published,
            "partitions": partitions,
            "staging": staging,
            "columns": columns,
        },
        sys.stdout,
        default=str,
    )


if __name__ == "__main__":
    main()
