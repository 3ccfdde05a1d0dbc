"""A chaos run against the real `pipe` binary: clients post events and
record every acknowledged one while the server is, at random, SIGKILLed,
stopped at a `PIPE_CRASH_AT` point, left without its S3 server (stopped
or hung), restarted with another configuration, and while clients hang
up before their answers and send gzip bodies and idempotent retries. At
the end every acknowledged event is counted in the Iceberg table (by
PyIceberg) and in the Parquet file sink (by DuckDB), and the run prints:

    acked N, lost L, duplicated D, restarts R (kills K, crash points C, ...)

It exits 1 if anything acknowledged is missing or anything is stored
twice. Run it with `scripts/chaos` (see there for the options).
"""

import argparse
import gzip
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
READERS = REPO / "tests" / "readers"
CRASH_POINTS = [
    "before-write",
    "after-files",
    "after-commit",
    "mid-publish",
    "before-release",
    "after-failed-rows-commit",
]
SCHEMA = {
    "fields": [
        {"name": "id", "type": "string", "required": True},
        {"name": "n", "type": "int64", "required": True},
        {"name": "pad", "type": "string"},
    ]
}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}

    def add(self, name, n=1):
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + n

    def get(self, name):
        with self.lock:
            return self.counts.get(name, 0)


class S3:
    """A private ministack, so that the run can stop and hang it."""

    def __init__(self, venv_bin, data):
        self.bin = venv_bin / "ministack"
        self.data = data
        self.port = free_port()
        self.proc = None
        self.paused = False

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        env = dict(os.environ, BIND_HOST="127.0.0.1", GATEWAY_PORT=str(self.port),
                   S3_PERSIST="1", S3_DATA_DIR=str(self.data))
        self.proc = subprocess.Popen([str(self.bin)], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"{self.endpoint}/_ministack/health", timeout=1)
                return
            except Exception:
                time.sleep(0.2)
        raise SystemExit("ministack did not start")

    def stop(self):
        if self.proc:
            if self.paused:
                self.proc.send_signal(signal.SIGCONT)
                self.paused = False
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def make_bucket(self, name):
        req = urllib.request.Request(f"{self.endpoint}/{name}", method="PUT")
        try:
            urllib.request.urlopen(req, timeout=10)
        except urllib.error.HTTPError as e:
            if e.code != 409:
                raise


class Server:
    """`pipe serve` on a fixed port, restarted with other settings."""

    def __init__(self, binary, dir, port, s3):
        self.armed = None
        self.binary = binary
        self.dir = dir
        self.port = port
        self.s3 = s3
        self.proc = None
        self.log = open(dir / "serve.log", "ab")

    def write_config(self, variant):
        evens = ""
        if variant["evens"]:
            evens = """
[sinks.evens_sink]
table = "evens"
roll_interval_secs = 2

[pipelines.evens]
sql = "INSERT INTO evens_sink SELECT * FROM events WHERE n % 2 = 0"
"""
        (self.dir / "schema.json").write_text(json.dumps(SCHEMA))
        (self.dir / "pipe.toml").write_text(f"""
data_dir = "data"
store_timeout_secs = 5

[warehouse]
location = "s3://chaos/warehouse"
s3 = {{ endpoint = "{self.s3.endpoint}", region = "us-east-1", access_key_id = "test", secret_access_key = "test", path_style = true }}

[streams.events]
schema_file = "schema.json"
buffer_segment_mb = {variant["segment_mb"]}

[sinks.all_sink]
table = "all"
roll_interval_secs = {variant["roll"]}

[sinks.files]
type = "parquet"
path = "out"
roll_interval_secs = {variant["roll"] + 1}

[pipelines.all]
sql = "INSERT INTO all_sink SELECT * FROM events"

[pipelines.to_files]
sql = "INSERT INTO files SELECT id, n FROM events"
{evens}""")

    def start(self, crash_at=None):
        env = dict(os.environ, PIPE_LOG="info")
        env.pop("PIPE_ADMIN_TOKEN", None)
        if crash_at:
            env["PIPE_CRASH_AT"] = crash_at
        self.armed = crash_at
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--config", str(self.dir / "pipe.toml"),
             "--listen", f"127.0.0.1:{self.port}"],
            env=env, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False  # died at once (a crash point hit while catching up)
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1)
                return True
            except Exception:
                time.sleep(0.1)
        raise SystemExit("pipe serve did not become healthy; see serve.log")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
        if self.proc:
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode if self.proc else None

    def post(self, path, body, timeout=10):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request("POST", path, body=body, headers={"content-type": "application/json"})
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()


class Client(threading.Thread):
    """Posts requests of unique events, each with its own Idempotency-Key,
    retrying a request until some answer says what became of it."""

    def __init__(self, n, server, stats, stop, rng):
        super().__init__(daemon=True)
        self.n = n
        self.server = server
        self.stats = stats
        self.stop_event = stop
        self.rng = rng
        self.acked = set()
        self.unsure = {}  # key -> (ids, body, headers) not yet answered

    def request(self, seq):
        count = self.rng.choice([1, 5, 20, 100])
        ids = [f"c{self.n}-{seq}-{i}" for i in range(count)]
        pad = "x" * self.rng.choice([0, 10, 500])
        lines = "".join(json.dumps({"id": i, "n": seq, "pad": pad}) + "\n" for i in ids)
        headers = {"content-type": "application/x-ndjson", "idempotency-key": f"k{self.n}-{seq}"}
        body = lines.encode()
        if self.rng.random() < 0.3:
            body = gzip.compress(body)
            if self.rng.random() < 0.3:
                # Two gzip members, as `cat a.gz b.gz` makes.
                half = len(ids) // 2
                first = "".join(lines.splitlines(True)[:half]).encode()
                rest = "".join(lines.splitlines(True)[half:]).encode()
                body = gzip.compress(first) + gzip.compress(rest)
            headers["content-encoding"] = "gzip"
            self.stats.add("gzip requests")
        return ids, body, headers

    def send(self, ids, body, headers, hang_up=False):
        """True: acked; False: refused for good (never expected); None:
        unknown (retry later)."""
        port = self.server.port
        if hang_up:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                head = "POST /v1/streams/events HTTP/1.1\r\nhost: x\r\n"
                head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                head += f"content-length: {len(body)}\r\n\r\n"
                s.sendall(head.encode() + body)
                s.close()
            except OSError:
                pass
            self.stats.add("hang-ups")
            return None
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("POST", "/v1/streams/events", body=body, headers=headers)
            r = c.getresponse()
            data = r.read()
            c.close()
        except (OSError, http.client.HTTPException):
            self.stats.add("requests without an answer")
            return None
        if r.status == 200:
            if r.getheader("idempotent-replayed"):
                self.stats.add("replayed answers")
            return True
        if r.status in (408, 409, 429, 500, 502, 503):
            self.stats.add(f"answers {r.status}")
            return None
        sys.stderr.write(f"unexpected answer {r.status}: {data[:300]!r}\n")
        self.stats.add("refused requests")
        return False

    def settle(self, key, ids, body, headers):
        result = self.send(ids, body, headers)
        if result:
            self.acked.update(ids)
            self.unsure.pop(key, None)
            self.stats.add("acked events", len(ids))
        elif result is None:
            self.unsure[key] = (ids, body, headers)
        else:
            self.unsure.pop(key, None)

    def run(self):
        seq = 0
        while not self.stop_event.is_set():
            # Retries first: the same key, the same body.
            for key, (ids, body, headers) in list(self.unsure.items()):
                if self.stop_event.is_set():
                    return
                self.stats.add("retries")
                self.settle(key, ids, body, headers)
            if self.unsure:
                # The server is down or busy: do not hammer it.
                time.sleep(0.1)
            seq += 1
            ids, body, headers = self.request(seq)
            key = headers["idempotency-key"]
            hang_up = self.rng.random() < 0.05
            if hang_up:
                self.send(ids, body, headers, hang_up=True)
                self.unsure[key] = (ids, body, headers)
            else:
                self.settle(key, ids, body, headers)
            if self.rng.random() < 0.05:
                # A retry of an answered request: must add nothing.
                self.stats.add("retries of acked requests")
                self.send(ids, body, headers)
            time.sleep(self.rng.random() * 0.02)

    def drain(self, deadline):
        """Retries every request whose outcome is unknown until answered."""
        while self.unsure and time.time() < deadline:
            for key, (ids, body, headers) in list(self.unsure.items()):
                self.settle(key, ids, body, headers)
            if self.unsure:
                time.sleep(0.5)


def variant(rng):
    return {"roll": rng.choice([1, 3]), "segment_mb": rng.choice([1, 4]),
            "evens": rng.random() < 0.5}


def chaos(args, server, s3, stats, rng, clients):
    end = time.time() + args.seconds
    while time.time() < end:
        time.sleep(rng.uniform(0.5, args.interval))
        action = rng.random()
        if not server.alive():
            # It died at its crash point: start it again, plainly.
            stats.add("crash points hit")
            server.write_config(variant(rng))
            server.start()
            stats.add("restarts")
            continue
        if action < 0.35:
            server.kill()
            stats.add("kills")
            server.write_config(variant(rng))
            if rng.random() < 0.4:
                point = f"{rng.choice(CRASH_POINTS)}@{rng.randint(1, 3)}"
                stats.add("crash points armed")
                server.start(crash_at=point)
            else:
                server.start()
            stats.add("restarts")
        elif action < 0.45:
            # The store hangs for a while.
            s3.pause()
            stats.add("s3 hangs")
            time.sleep(rng.uniform(1, 6))
            s3.resume()
        elif action < 0.55:
            # The store goes away for a while.
            s3.stop()
            stats.add("s3 outages")
            time.sleep(rng.uniform(1, 5))
            s3.start()
        elif action < 0.75:
            try:
                server.post("/v1/pipelines/all/flush", b"{}", timeout=30)
                stats.add("flushes")
            except (OSError, http.client.HTTPException):
                pass
        elif action < 0.85:
            code = server.stop()
            stats.add("orderly stops")
            if code not in (0, None):
                stats.add(f"stops that exited {code}")
            server.write_config(variant(rng))
            server.start()
            stats.add("restarts")


def count(args, venv_python, dir, s3, acked):
    env = dict(os.environ, PYTHONPATH=str(READERS))
    table = subprocess.run(
        [venv_python, str(READERS / "check_table.py"), "--catalog-db",
         str(dir / "data" / "catalog.db"), "--warehouse", "s3://chaos/warehouse",
         "--table", "default.all", "--column", "id", "--s3-endpoint", s3.endpoint],
        capture_output=True, text=True, env=env)
    if table.returncode != 0:
        raise SystemExit(f"check_table.py failed: {table.stderr}")
    table = json.loads(table.stdout)
    files = subprocess.run(
        [venv_python, str(READERS / "check_files.py"), "--location",
         "s3://chaos/warehouse/out", "--format", "parquet", "--column", "id",
         "--s3-endpoint", s3.endpoint],
        capture_output=True, text=True, env=env)
    if files.returncode != 0:
        raise SystemExit(f"check_files.py failed: {files.stderr}")
    files = json.loads(files.stdout)
    out = {}
    for name, got in (("table", table), ("files", files)):
        ids = set(got["ids"])
        out[name] = {
            "stored": got["n"],
            "lost": len(acked - ids),
            "duplicated": got["n"] - got["distinct"],
            "unacked": len(ids - acked),
            "orphans": len(got.get("orphans", [])),
            "examples_lost": sorted(acked - ids)[:5],
        }
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", required=True, help="the pipe binary")
    p.add_argument("--seconds", type=float, default=120, help="how long the chaos lasts")
    p.add_argument("--interval", type=float, default=3.0, help="most seconds between actions")
    p.add_argument("--clients", type=int, default=3)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--keep", action="store_true", help="keep the run's folder")
    args = p.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    venv_python = sys.executable
    venv_bin = Path(venv_python).parent
    dir = Path(tempfile.mkdtemp(prefix="pipe-chaos-"))
    stats = Stats()
    s3 = S3(venv_bin, dir / "s3")
    s3.start()
    s3.make_bucket("chaos")
    server = Server(args.binary, dir, free_port(), s3)
    server.write_config(variant(rng))
    started = time.time()
    print(f"chaos: seed {seed}, {args.seconds:.0f} s, folder {dir}", flush=True)
    if not server.start():
        raise SystemExit("the first start failed; see serve.log")
    stop = threading.Event()
    clients = [Client(n, server, stats, stop, random.Random(rng.random())) for n in range(args.clients)]
    for c in clients:
        c.start()
    try:
        chaos(args, server, s3, stats, rng, clients)
    finally:
        stop.set()
        for c in clients:
            c.join()
    # Calm: the store back, a plain server, every unknown request settled.
    if s3.paused:
        s3.resume()
    if s3.proc is None:
        s3.start()
    # A server still running with a crash point armed would stop at it
    # during the final flush: it is killed (one more crash) and started plainly.
    if not server.alive() or server.armed:
        server.kill()
        server.write_config(variant(rng))
        server.start()
    deadline = time.time() + 300
    for c in clients:
        c.drain(deadline)
    unsure = sum(len(c.unsure) for c in clients)
    for pipeline in ("all", "to_files"):
        status, body = server.post(f"/v1/pipelines/{pipeline}/flush", b"{}", timeout=300)
        if status != 200:
            raise SystemExit(f"the final flush of {pipeline} failed: {status} {body[:300]!r}")
    code = server.stop()
    acked = set().union(*(c.acked for c in clients))
    counted = count(args, venv_python, dir, s3, acked)
    s3.stop()
    figures = {k: v for k, v in sorted(stats.counts.items())}
    lost = max(c["lost"] for c in counted.values())
    duplicated = max(c["duplicated"] for c in counted.values())
    print(f"chaos: seed {seed}, {time.time() - started:.0f} s")
    print(f"  acked {len(acked)} events, lost {lost}, duplicated {duplicated}, "
          f"restarts {stats.get('restarts')} (kills {stats.get('kills')}, crash points hit "
          f"{stats.get('crash points hit')} of {stats.get('crash points armed')} armed, orderly stops "
          f"{stats.get('orderly stops')}), requests never settled {unsure}, last stop exited {code}")
    print("  " + json.dumps(figures))
    for name, c in counted.items():
        print(f"  {name}: " + json.dumps(c))
    failed = lost or duplicated or unsure or any(c["unacked"] for c in counted.values())
    if not args.keep and not failed:
        shutil.rmtree(dir, ignore_errors=True)
    elif failed:
        print(f"chaos: FAILED; the run's folder is kept: {dir}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
