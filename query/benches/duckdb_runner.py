"""DuckDB's side of `cargo bench -p pipe-query --bench query`.

Reads one JSON request per line on stdin and answers one JSON line each:

- {"threads": n, "views": {"name": [parquet files]}}: sets the threads and
  creates a view per table over exactly those files;
- {"sql": "...", "runs": n}: one warm-up, then n timed runs of the query
  (executed and fetched as Arrow, as pipe returns it); answers {"median_ms", "rows"}.
"""

import json
import statistics
import sys
import time

import duckdb

con = duckdb.connect()
for line in sys.stdin:
    request = json.loads(line)
    try:
        if "views" in request:
            con.execute(f"SET threads = {int(request['threads'])}")
            for name, files in request["views"].items():
                listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
                con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet([{listed}])")
            answer = {"ok": True}
        else:
            times = []
            rows = 0
            for run in range(request["runs"] + 1):
                started = time.perf_counter()
                rows = con.execute(request["sql"]).fetch_arrow_table().num_rows
                if run > 0:
                    times.append((time.perf_counter() - started) * 1e3)
            answer = {"median_ms": statistics.median(times), "rows": rows}
    except Exception as e:  # the bench prints it and stops
        answer = {"error": str(e)}
    print(json.dumps(answer), flush=True)
