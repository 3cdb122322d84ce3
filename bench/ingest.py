"""Collector ingest: signed datagrams from 100 node identities at fixed rates, to a real master.

For each rate the datagrams are made beforehand (each with its own seq and the timestamp of
its planned send time, so they pass the replay and clock windows), then sent paced in 1 ms
batches over loopback multicast for the run's length. Reported per rate: datagrams sent,
the fraction the master accepted (from its /api/stats), and the master's CPU use.

With `--keys own` every identity first enrolls with the master (join token, then the admin
approves it under its name) and signs with its own key, bound to its name; with `--keys
shared` (the default) all sign with the cluster's shared key.

    python bench/ingest.py [--seconds 10] [--rates 1000,5000,10000,20000,50000] [--keys own]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import SAMPLE, cpu_seconds, rss_mib, wait_ready, write_local_spec

from bramble.spec import load_secrets, load_spec
from bramble.telemetry.encode import encode

IDENTITIES = 100


def make_datagrams(
    rate: int, seconds: float, start: float, keys: list[tuple[bytes, str]]
) -> list[bytes]:
    """RATE x SECONDS datagrams, round-robin over the identities (each signing with its entry
    of KEYS, or all with the one there is), stamped with their send time."""
    total = int(rate * seconds)
    seqs = [0] * IDENTITIES
    out = []
    for i in range(total):
        node = i % IDENTITIES
        seqs[node] += 1
        key, key_id = keys[node % len(keys)]
        out.append(
            encode(
                SAMPLE,
                node=f"bench-{node:03d}",
                boot=1_700_000_000,
                seq=int(start * 1000) + seqs[node],
                ts=start + i / rate,
                interval=1.0,
                key=key,
                key_id=key_id,
            )
        )
    return out


def send_paced(datagrams: list[bytes], rate: int, target: tuple[str, int]) -> float:
    """Send DATAGRAMS at RATE per second in 1 ms batches; return the seconds it took."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    sendto = sock.sendto
    begin = time.perf_counter()
    sent = 0
    total = len(datagrams)
    while sent < total:
        due = min(total, int((time.perf_counter() - begin) * rate) + 1)
        while sent < due:
            try:
                sendto(datagrams[sent], target)
            except BlockingIOError:
                continue
            sent += 1
        time.sleep(0.001)
    sock.close()
    return time.perf_counter() - begin


def enroll_identities(
    base: str, enroll_base: str, ca: Path, join_token: str, admin_token: str
) -> list[tuple[bytes, str]]:
    """Each identity's own key, enrolled with the master at ENROLL_BASE (HTTPS, its
    certificate signed by CA) and bound to its name by the admin at BASE."""
    import secrets
    import ssl

    keys = []
    verify = ssl.create_default_context(cafile=str(ca))
    with httpx.Client(timeout=10) as client, httpx.Client(timeout=10, verify=verify) as tls:
        for node in range(IDENTITIES):
            key = secrets.token_bytes(32)
            mac = f"02:be:00:00:{node // 256:02x}:{node % 256:02x}"
            body = {"mac": mac, "key": key.hex(), "nonce": secrets.token_urlsafe(16)}
            auth = {"Authorization": f"Bearer {join_token}"}
            asked = tls.post(f"{enroll_base}/api/enroll", json=body, headers=auth)
            assert asked.status_code == 202, asked.text
            approved = client.post(
                f"{base}/api/trust/approve",
                json={"who": mac, "name": f"bench-{node:03d}"},
                headers={"Authorization": f"Bearer {admin_token}"},
            )
            approved.raise_for_status()
            keys.append((key, str(approved.json()["key_id"])))
    return keys


def stats(base: str) -> dict[str, object]:
    response = httpx.get(f"{base}/api/stats", timeout=10)
    response.raise_for_status()
    data: dict[str, object] = response.json()
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rates", default="1000,5000,10000,20000,50000")
    parser.add_argument("--keys", choices=("shared", "own"), default="shared")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]

    with tempfile.TemporaryDirectory(prefix="bramble-bench-ingest-") as tmp:
        state = Path(tmp)
        spec_path, base = write_local_spec(state)
        spec = load_spec(spec_path)
        secrets = load_secrets(spec_path)
        target = (str(spec.telemetry.group), spec.telemetry.port)
        if args.keys == "own":  # the master enrolls over HTTPS with the cluster CA's certificate
            from bramble.jobs.tls import create_cluster_tls

            create_cluster_tls(state / "tls")
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
            keys = [(secrets.telemetry_key, secrets.telemetry_key_id)]
            if args.keys == "own":
                keys = enroll_identities(
                    base,
                    f"https://127.0.0.1:{spec.enroll_port}",
                    state / "tls" / "ca.pem",
                    secrets.join_token,
                    secrets.admin_token,
                )
            print(f"keys: {args.keys} ({len(keys)})")
            print(f"{'rate/s':>8} {'sent':>8} {'accepted':>9} {'fraction':>9} "
                  f"{'rejected':>9} {'master CPU':>10} {'RSS MiB':>8}")  # fmt: skip
            for rate in rates:
                start = time.time() + 2 + rate * args.seconds / 60_000  # after making them
                datagrams = make_datagrams(rate, args.seconds, start, keys)
                while time.time() < start:
                    time.sleep(0.001)
                before = stats(base)
                cpu0 = cpu_seconds(master.pid)
                wall = send_paced(datagrams, rate, target)
                time.sleep(1.0)  # let the receive buffer drain
                cpu = cpu_seconds(master.pid) - cpu0
                after = stats(base)
                accepted = int(after["accepted"]) - int(before["accepted"])  # type: ignore[call-overload]
                rejected = sum(after["rejected"].values()) - sum(before["rejected"].values())  # type: ignore[attr-defined]
                print(
                    f"{rate:>8} {len(datagrams):>8} {accepted:>9} "
                    f"{accepted / len(datagrams):>9.4%} {rejected:>9} "
                    f"{cpu / (wall + 1.0):>10.0%} {rss_mib(master.pid):>8.1f}",
                    flush=True,
                )
        finally:
            master.terminate()
            master.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
