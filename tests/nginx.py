"""A throwaway nginx reverse proxy in front of `tailor serve` replicas, for the replica
test: Debian's nginx, a config in a temp directory, a loopback port, round robin over
the replicas, stopped at the end. The config is the README's deployment example."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from bench.servers import free_port

# What the README shows: round robin; a replica that refuses connections is skipped for
# 10 s, and a request it never received goes to the next one (nginx passes a POST on only
# when it was not sent: a turn is never run twice).
CONFIG = """\
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
{user}
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    upstream tailor {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://tailor;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;               # streamed answers pass through as written
            proxy_read_timeout 300s;
            proxy_next_upstream error timeout;
        }}
    }}
}}
"""


def nginx_bin() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


@contextmanager
def running_nginx(upstreams: list[str]):
    """Yields ``http://127.0.0.1:PORT``, proxying to ``upstreams`` (``host:port``);
    raises RuntimeError with what to install when there is no nginx."""
    binary = nginx_bin()
    if binary is None:
        raise RuntimeError("no nginx: `make test` installs it as root; else apt-get install nginx")
    root, port = Path(tempfile.mkdtemp(prefix="tailor-nginx-")), free_port()
    root.chmod(0o755)
    servers = "\n".join(f"        server {u} max_fails=1 fail_timeout=10s;" for u in upstreams)
    # as root, nginx's worker would switch to a user that may lack these temp paths
    user = "user root;" if os.geteuid() == 0 else ""
    conf = root / "nginx.conf"
    conf.write_text(CONFIG.format(root=root, port=port, servers=servers, user=user))
    proc = subprocess.Popen([binary, "-c", str(conf), "-p", str(root), "-e",
                             str(root / "error.log")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"nginx did not start: {proc.stderr.read().decode()[-1500:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("nginx did not listen in 20 s") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGQUIT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)
