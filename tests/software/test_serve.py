"""`/dist/`: the wheels a master serves, what pip makes of them, and hostile names."""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from bramble_testing import Processes, serving, wait_for, write_spec
from fastapi import FastAPI

from bramble.software import own
from bramble.software.api import software_router
from bramble.software.depot import Depot, wheel_name_ok
from bramble.software.own import OwnWheelError, Wheel
from bramble.spec import load_spec

from .conftest import make_venv, pip, tiny_wheel

Serve = Callable[[FastAPI], httpx.Client]


@pytest.fixture
def served() -> Iterator[Serve]:
    """Serves an app with uvicorn on loopback; gives an HTTP client for it."""
    with contextlib.ExitStack() as stack:

        def serve(app: FastAPI) -> httpx.Client:
            base = stack.enter_context(serving(app))
            return stack.enter_context(httpx.Client(base_url=base, timeout=30))

        yield serve


def _app(wheels: Path, own: Wheel | None) -> FastAPI:
    def make_own() -> Wheel:
        if own is None:
            raise OwnWheelError("pip wheel /src failed: no backend")
        return own

    app = FastAPI()
    app.include_router(software_router(wheels, Depot(wheels, make_own)))
    return app


def _raw_get(base: str, target: str) -> bytes:
    """A GET of TARGET sent as is (no client normalizes its dots or slashes); the response."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    directory = tmp_path / "wheels"
    directory.mkdir()
    tiny_wheel(directory)
    return directory


OWN = Wheel("bramble_cluster-9.8.7-py3-none-any.whl", b"PK not really a wheel")


def _links(page: str) -> dict[str, str]:
    return dict(re.findall(r'<a href="([^"#]+)#sha256=([0-9a-f]{64})">', page))


def test_page_lists_own_wheel_and_directory_with_hashes(wheels: Path, served: Serve) -> None:
    client = served(_app(wheels, OWN))
    page = client.get("/dist/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    links = _links(page.text)
    assert list(links) == [OWN.filename, "hello_dep-1.0-py3-none-any.whl"]
    assert links[OWN.filename] == OWN.sha256
    assert client.get("/dist/version").text == "9.8.7\n"
    assert client.get("/dist/requirement").text == "bramble-cluster==9.8.7\n"
    assert client.get(f"/dist/{OWN.filename}").content == OWN.data
    dep = client.get("/dist/hello_dep-1.0-py3-none-any.whl")
    assert dep.content == (wheels / "hello_dep-1.0-py3-none-any.whl").read_bytes()
    assert dep.headers["content-length"] == str(len(dep.content))


def test_without_its_own_wheel_the_master_says_why(wheels: Path, served: Serve) -> None:
    client = served(_app(wheels, None))
    version = client.get("/dist/version")
    assert version.status_code == 503 and version.headers["retry-after"] == "10"
    assert "pip wheel /src failed: no backend" in version.text
    page = client.get("/dist/")
    assert "bramble&#x27;s own wheel is missing: pip wheel /src failed" in page.text
    assert list(_links(page.text)) == ["hello_dep-1.0-py3-none-any.whl"]


@pytest.mark.parametrize(
    "name",
    [
        "../secret.whl",
        "..%2fsecret.whl",
        "%2e%2e%2fsecret.whl",
        "..",
        ".hidden-1.0-py3-none-any.whl",
        "link-1.0-py3-none-any.whl",
        "dir-1.0-py3-none-any.whl",
        "notes.txt",
        "secret.whl",
        "a" * 300 + "-1.0-py3-none-any.whl",
    ],
)
def test_only_listed_regular_wheel_files_are_served(wheels: Path, name: str, served: Serve) -> None:
    outside = wheels.parent / "secret.whl"
    outside.write_bytes(b"not for the nodes")
    (wheels / "link-1.0-py3-none-any.whl").symlink_to(outside)
    (wheels / "dir-1.0-py3-none-any.whl").mkdir()
    (wheels / ".hidden-1.0-py3-none-any.whl").write_bytes(b"x")
    (wheels / "notes.txt").write_text("x")
    client = served(_app(wheels, OWN))
    response = client.get("/dist/" + name)
    assert response.status_code == 404
    assert b"not for the nodes" not in response.content
    assert list(_links(client.get("/dist/").text)) == [
        OWN.filename,
        "hello_dep-1.0-py3-none-any.whl",
    ]


def test_raw_traversal_paths_reach_nothing(wheels: Path, served: Serve) -> None:
    (wheels.parent / "secret.whl").write_bytes(b"not for the nodes")
    client = served(_app(wheels, OWN))
    for raw in ("/dist/../secret.whl", "/dist/%2e%2e/secret.whl", "/dist//secret.whl"):
        response = _raw_get(str(client.base_url).rstrip("/"), raw)
        assert b"not for the nodes" not in response
        assert response.split(b" ", 2)[1] in (b"404", b"307"), response[:200]


def test_wheel_names() -> None:
    assert wheel_name_ok("bramble_cluster-0.1.0-py3-none-any.whl")
    assert wheel_name_ok("numpy-2.0.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl")
    assert wheel_name_ok("pkg-1.0-1build-py3-none-any.whl")
    for bad in ("a/b-1-py3-none-any.whl", "a..b-1-py3-none-any.whl", "x.whl", "-1-a-b-c.whl"):
        assert not wheel_name_ok(bad)


@pytest.mark.slow
def test_pip_installs_from_a_running_master_offline(
    built_wheel: Path, tmp_path: Path, processes: Processes
) -> None:
    """A real master serves its own wheel; pip in a fresh venv installs it with --no-index."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    tiny_wheel(wheels)
    spec = write_spec(tmp_path / "cluster", extra=f'[software]\nwheels_dir = "{wheels}"\n')
    url = f"http://127.0.0.1:{load_spec(spec).dashboard.port}/dist/"
    processes.start("master", "master", "--spec", str(spec))

    def version_served() -> str:
        answer = httpx.get(url + "version", timeout=10)
        return answer.text.strip() if answer.status_code == 200 else ""

    version = wait_for(version_served, 300, "the master's version at /dist/version", every=1)
    python = make_venv(tmp_path / "node")
    out = pip(
        python,
        "install",
        "--no-index",
        "--find-links",
        url,
        "--no-deps",
        f"{built_wheel.name.split('-')[0]}=={version}",
        "hello-dep",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    site = next((tmp_path / "node/lib").glob("python3*/site-packages"))
    assert (site / "bramble/software/own.py").read_bytes() == Path(own.__file__).read_bytes()
    assert (site / "hello_dep.py").exists()


def test_a_slow_build_answers_503_at_once_then_serves(wheels: Path, served: Serve) -> None:
    """A master running from a source tree builds its wheel once; no request hangs on it."""
    import threading

    release = threading.Event()

    def make_own() -> Wheel:
        release.wait(30)
        return OWN

    depot = Depot(wheels, make_own)
    with pytest.raises(OwnWheelError, match="being made"):
        depot.own(wait=0.05)
    app = FastAPI()
    app.include_router(software_router(wheels, depot))
    client = served(app)
    busy = client.get("/dist/requirement")
    assert busy.status_code == 503 and "being made" in busy.text
    assert list(_links(client.get("/dist/").text)) == ["hello_dep-1.0-py3-none-any.whl"]
    release.set()
    assert depot.own(wait=10) is OWN
    assert client.get("/dist/requirement").text == "bramble-cluster==9.8.7\n"
