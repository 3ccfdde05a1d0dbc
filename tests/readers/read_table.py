"""Reads a table pipe wrote with readers nobody on the project wrote.

PyIceberg opens the same SQL catalog (SQLite file) and scans the table;
DuckDB reads the table's Parquet data files directly. Prints one JSON object:
{"pyiceberg": {"rows": [...], "summary": {...}, "files": [...], "sort_order": ["col DESC NULLS LAST", ...],
 "sort_order_ids": [...]}, "duckdb": {"rows": [...], "by_file": {path: [...]}}}.
Rows leave out __ingest_ts and are sorted; `by_file` (with --file-column C)
holds each data file's values of C in the order the file stores them.
"""

import argparse
import json
import sys

from testenv import open_catalog


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--catalog-name", default="pipe")
    p.add_argument("--catalog-db", required=True, help="path of the SQLite catalog file")
    p.add_argument("--warehouse", required=True)
    p.add_argument("--table", required=True, help="namespace.table")
    p.add_argument("--s3-endpoint", help="S3 endpoint for s3:// warehouses")
    p.add_argument("--duckdb", action="store_true", help="also read the data files with DuckDB")
    p.add_argument("--file-column", help="with --duckdb: each file's values of this column, in file order")
    args = p.parse_args()

    catalog = open_catalog(args.catalog_db, args.warehouse, args.s3_endpoint, args.catalog_name)
    table = catalog.load_table(args.table)
    data = table.scan().to_arrow()
    rows = data.drop_columns(["__ingest_ts"]).to_pylist()
    inspected = table.inspect.files()
    files = inspected.column("file_path").to_pylist()
    snapshot = table.current_snapshot()
    out = {
        "pyiceberg": {
            "rows": sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str)),
            "summary": dict(snapshot.summary.additional_properties) if snapshot else {},
            "files": files,
            "partition_spec": str(table.spec()),
            "sort_order": [
                f"{table.schema().find_column_name(f.source_id)} {f.direction} {f.null_order}"
                for f in table.sort_order().fields
            ],
            "sort_order_ids": inspected.column("sort_order_id").to_pylist(),
            "properties": dict(table.properties),
        }
    }
    if args.duckdb:
        import duckdb

        local = [f.removeprefix("file://") for f in files]
        con = duckdb.connect()
        rel = con.sql(f"SELECT * EXCLUDE (__ingest_ts) FROM read_parquet({local!r}, hive_partitioning = false, union_by_name = true)")
        cols = rel.columns
        drows = [dict(zip(cols, r)) for r in rel.fetchall()]
        codecs = con.sql(
            f"SELECT DISTINCT compression FROM parquet_metadata({local!r})"
        ).fetchall()
        out["duckdb"] = {
            "rows": sorted(drows, key=lambda r: json.dumps(r, sort_keys=True, default=str)),
            "compression": sorted(c[0] for c in codecs),
        }
        if args.file_column:
            col = args.file_column
            out["duckdb"]["by_file"] = {
                f: [r[0] for r in con.sql(
                    f"SELECT \"{col}\" FROM read_parquet({f!r}, file_row_number = true) ORDER BY file_row_number"
                ).fetchall()]
                for f in local
            }
    json.dump(out, sys.stdout, default=str)


if __name__ == "__main__":
    main()
