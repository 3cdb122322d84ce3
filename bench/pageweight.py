"""Dashboard page weight: every byte the page at / loads, uncompressed and gzipped.

Starts a master on loopback (or uses --url), opens the page in headless chromium with
Playwright, waits for the network to go quiet, and sums the bodies of every response the
page received (the event stream excepted: it is data, not page weight), plus the compact
view's, the compare panel's and the node detail view's assets. Also checks that no request
left the master.

    python bench/pageweight.py [--url http://127.0.0.1:8080]
"""

from __future__ import annotations

import argparse
import gzip
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from common import wait_ready, write_local_spec
from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
TARGET = 150 * 1024


def measure(base: str) -> int:
    """Load BASE in chromium and print the weight table; return 1 if over target."""
    bodies: dict[str, bytes] = {}
    foreign: list[str] = []
    host = urlparse(base).netloc
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page()

        def on_response(response: object) -> None:
            url = response.url  # type: ignore[attr-defined]
            if urlparse(url).netloc != host and not url.startswith("data:"):
                foreign.append(url)
            if "/api/" in url or url.startswith("data:"):
                return
            try:
                bodies[url] = response.body()  # type: ignore[attr-defined]
            except Exception:  # a body chromium did not keep
                bodies[url] = b""

        page.on("response", on_response)
        page.goto(base + "/", wait_until="load")
        page.wait_for_timeout(2000)
        page.click(".view-switch button[data-view=compact]")  # the compact view
        page.click("#compare summary")  # the compare panel loads its module when opened
        page.wait_for_timeout(1000)
        page.goto(base + "/#/node/none")
        page.wait_for_timeout(1000)
        browser.close()
    total = sum(len(b) for b in bodies.values())
    total_gz = sum(len(gzip.compress(b, 9)) for b in bodies.values())
    print(f"{'bytes':>8} {'gzip':>8}  resource")
    for url, body in sorted(bodies.items(), key=lambda kv: -len(kv[1])):
        print(f"{len(body):>8} {len(gzip.compress(body, 9)):>8}  {urlparse(url).path}")
    print(f"{total:>8} {total_gz:>8}  total ({len(bodies)} resources, target <= {TARGET} bytes)")
    print(f"requests to other hosts: {len(foreign)} {foreign[:5]}")
    return 0 if total <= TARGET and not foreign else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running master (default: start one)")
    args = parser.parse_args()
    if args.url:
        return measure(args.url.rstrip("/"))
    with tempfile.TemporaryDirectory(prefix="bramble-bench-page-") as tmp:
        state = Path(tmp)
        spec_path, base = write_local_spec(state)
        master = subprocess.Popen(
            [sys.executable, "-m", "bramble", "master", "--spec", str(spec_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            if not wait_ready(base, master):
                return 1
            return measure(base)
        finally:
            master.terminate()
            master.wait(10)


if __name__ == "__main__":
    sys.exit(main())
