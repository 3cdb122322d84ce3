"""Enrollment cost on the master: N boards of the spec enroll at once with the join token (the
`auto` path: join token, rate limit, nonce, lease file read, policy, one SQLite transaction,
the collector's keys rebuilt), against a real `bramble master` process over loopback, on its
HTTPS enrollment port, each board on a connection of its own (a TLS handshake per board, as
boards do; `--keep-alive`: connections reused, to see what the handshakes cost).

Reported: requests/s over the wall clock, and requests per CPU-second of the master (what one
core sustains), with CONCURRENCY requests in flight; every answer must be `enrolled`.

    python bench/enroll.py [--nodes 500] [--concurrency 8] [--csr]
"""

from __future__ import annotations

import argparse
import secrets
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from common import cpu_seconds, rss_mib, wait_ready

from bramble.demo import free_port, local_spec_text
from bramble.init import secrets_text
from bramble.jobs.tls import create_cluster_tls
from bramble.spec import load_secrets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--csr", action="store_true", help="each board sends a worker CSR too")
    parser.add_argument("--keep-alive", action="store_true", help="reuse the connections")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bramble-bench-enroll-") as tmp:
        state = Path(tmp)
        macs = [f"02:b7:00:00:{i // 256:02x}:{i % 256:02x}" for i in range(1, args.nodes + 1)]
        leases = state / "dnsmasq.leases"
        leases.write_text("".join(f"0 {m} 127.0.0.1 node-{i} *\n" for i, m in enumerate(macs, 1)))
        port, enroll_port = free_port(), free_port()
        extra = f'[enroll]\nlease_file = "{leases}"\nper_minute = 100000\nport = {enroll_port}\n'
        spec_path = state / "bramble.toml"
        spec_path.write_text(
            local_spec_text(args.nodes, port, free_port(socket.SOCK_DGRAM), state, extra=extra)
        )
        (state / "bramble.secrets.toml").write_text(secrets_text())
        create_cluster_tls(state / "tls")  # the CA signs the enrollment port's certificate
        token = load_secrets(spec_path).join_token
        base = f"http://127.0.0.1:{port}"
        log = open(state / "master.log", "wb")  # noqa: SIM115
        master = subprocess.Popen(
            [sys.executable, "-m", "bramble", "master", "--spec", str(spec_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            if not wait_ready(base, master):
                print((state / "master.log").read_text(), file=sys.stderr)
                return 1
            csr = ""
            if args.csr:
                from bramble.trust.certs import make_csr

                csr = make_csr("bench")[1]  # one CSR for all: the master's cost is the same
            verify = ssl.create_default_context(cafile=str(state / "tls" / "ca.pem"))
            headers = {"Authorization": f"Bearer {token}"}
            client = httpx.Client(headers=headers, verify=verify)
            url = f"https://127.0.0.1:{enroll_port}/api/enroll"
            bodies = [
                {"mac": m, "key": secrets.token_hex(32), "nonce": secrets.token_urlsafe(16)}
                | ({"csr": csr} if csr else {})
                for m in macs
            ]

            def ask(body: dict[str, str]) -> str:
                if args.keep_alive:
                    answer = client.post(url, json=body, timeout=60)
                else:
                    answer = httpx.post(url, json=body, headers=headers, verify=verify, timeout=60)
                return str(answer.json()["status"])

            cpu0 = cpu_seconds(master.pid)
            begin = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                statuses = list(pool.map(ask, bodies))
            wall = time.perf_counter() - begin
            cpu = cpu_seconds(master.pid) - cpu0
            client.close()
            enrolled = statuses.count("enrolled")
            print(
                f"{args.nodes} requests ({'with' if csr else 'no'} CSR, "
                f"{'kept' if args.keep_alive else 'a new'} TLS connection), {args.concurrency} "
                f"in flight: {enrolled} enrolled, {wall:.2f} s, {args.nodes / wall:.0f} "
                f"requests/s, master CPU {cpu:.2f} s = {args.nodes / cpu:.0f} requests per "
                f"CPU-second, master RSS {rss_mib(master.pid):.1f} MiB"
            )
            return 0 if enrolled == args.nodes else 1
        finally:
            master.terminate()
            master.wait(10)
            log.close()


if __name__ == "__main__":
    sys.exit(main())
