"""Checks a table pipe wrote for exactly-once delivery, with readers nobody
on the project wrote.

PyIceberg scans one column of the table and lists the data files the table
references; pyarrow's file system lists every data file under the table's
data folder, on the local disk or on S3. Prints one JSON object:
{"n": rows, "distinct": distinct values, "ids": [...],
 "referenced": files the current snapshot references, "orphans": [files no
 snapshot references], "missing": [files the current snapshot references
 that are not on storage]}.
"""

import argparse
import json
import sys
from urllib.parse import urlparse

from pyarrow import fs
from testenv import open_catalog, s3_filesystem


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--catalog-db", help="path of the SQLite catalog file")
    p.add_argument("--catalog-uri", help="SQLAlchemy URI of another SQL catalog")
    p.add_argument("--catalog-name", default="pipe")
    p.add_argument("--warehouse", required=True)
    p.add_argument("--table", required=True, help="namespace.table")
    p.add_argument("--column", required=True, help="the column of unique ids")
    p.add_argument("--s3-endpoint", help="S3 endpoint for s3:// warehouses")
    args = p.parse_args()

    catalog = open_catalog(
        args.catalog_db, args.warehouse, args.s3_endpoint, args.catalog_name, args.catalog_uri
    )
    table = catalog.load_table(args.table)
    ids = table.scan(selected_fields=(args.column,)).to_arrow().column(args.column).to_pylist()
    referenced = set(table.inspect.files().column("file_path").to_pylist())
    # Files an older snapshot still reads (those compaction replaced, until
    # their snapshots expire) are not orphans.
    in_any_snapshot = set(table.inspect.all_files().column("file_path").to_pylist())

    data = urlparse(table.metadata.location.rstrip("/") + "/data")
    if data.scheme == "s3":
        store = s3_filesystem(args.s3_endpoint)
        root, prefix = data.netloc + data.path, "s3://"
    else:
        store, root, prefix = fs.LocalFileSystem(), data.path, "file://"
    on_storage = {
        prefix + f.path
        for f in store.get_file_info(fs.FileSelector(root, recursive=True, allow_not_found=True))
        if f.type == fs.FileType.File
    }
    json.dump(
        {
            "n": len(ids),
            "distinct": len(set(ids)),
            "ids": sorted(set(ids)),
            "referenced": len(referenced),
            "orphans": sorted(on_storage - referenced - in_any_snapshot),
            "missing": sorted(referenced - on_storage),
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
