"""``python -m lmcourse.data``: list, fetch, verify, pack and unpack the course's data.

Used in chapters: none directly.

Workshop flow (see ``data/README.md``)::

    make data                                        # = fetch + verify, on a machine online
    python -m lmcourse.data pack course-data.tar     # one archive of the cache, with a manifest
    python -m lmcourse.data unpack course-data.tar   # on each machine: verify, then place
    LMCOURSE_OFFLINE=1 make test

Exit codes: 0 success; 1 something missing, corrupt or refused (each named on stderr); 2 bad
command line (argparse).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from lmcourse.data.catalog import (
    CATALOG,
    ITEMS,
    PACK_COMMAND,
    UNPACK_COMMAND,
    Item,
    check_derived_file,
    check_names,
    derived_item,
    human_size,
    is_cached,
    registered_file,
    verify_item,
)
from lmcourse.data.fetch import DataError, cache_root, display_path, sha256_file

MANIFEST = "MANIFEST.json"
MANIFEST_FORMAT = 1


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# list, fetch, verify
# ----------------------------------------------------------------------------------------------
def list_items(root: Path | None = None) -> str:
    """The ``--list`` table: name, chapters, size, cached yes/no, source (one row per item)."""
    root = root or cache_root()
    rows = [("name", "chapters", "size", "cached", "kind", "source")]
    for item in ITEMS:
        size = human_size(item.size)
        if item.kind == "derived":
            present = item.files(root)
            size = human_size(sum(p.stat().st_size for p in present)) if present else f"~{size}"
        cached = "yes" if is_cached(item, root) else ("no (optional)" if item.kind == "derived" else "no")
        if item.kind == "package":
            cached = "installed" if cached == "yes" else "NOT INSTALLED"
        rows.append((item.name, ",".join(item.chapters), size, cached, item.kind, item.source))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=False)) + "  " + r[5]
             for r in rows]
    lines.append(f"cache: {display_path(root)} (set LMCOURSE_DATA_DIR to move it)")
    return "\n".join(lines)


def _selected(names: Sequence[str], default: Sequence[Item]) -> list[Item]:
    return [CATALOG[n] for n in check_names(names)] if names else list(default)


def fetch(names: Sequence[str] = (), derived: bool = True, root: Path | None = None) -> int:
    """Fetch (or check) each named item, default all; print sizes; verify every SHA-256.

    Derived caches with a builder are built unless ``derived`` is false (chapter 06's
    embeddings are written by the chapter itself). Returns the exit code (1 if any item failed).
    """
    root = root or cache_root()
    default = [i for i in ITEMS if i.kind != "derived" or (derived and i.build is not None)]
    items = _selected(names, default)
    failed = []
    for item in items:
        start = time.perf_counter()
        print(f"{item.name:17s} ({', '.join(item.chapters)}) ... ", end="", flush=True)
        try:
            if item.kind == "derived":
                if item.build is None:
                    print(f"not built here ({item.source})")
                    continue
                item.build(root)
            else:
                item.ensure(root)
            problems = verify_item(item, root)
        except (DataError, OSError, ImportError, ValueError) as exc:
            problems = [str(exc)]
        if problems:
            print("FAILED")
            failed.append(item.name)
            for p in problems:
                _err(f"  {item.name}: {p}")
            continue
        size = (sum(p.stat().st_size for p in item.files(root)) if item.kind != "package"
                else item.size)
        print(f"ok, {human_size(size)}, {item.checked_by} ({time.perf_counter() - start:.1f} s)")
    if failed:
        _err(f"could not fetch: {', '.join(failed)} (see above; `{UNPACK_COMMAND}` installs them "
             "from a teacher's archive)")
        return 1
    return 0


def verify(names: Sequence[str] = (), root: Path | None = None) -> int:
    """Re-hash every cached file of the named items (default all); 1 if any is bad or missing."""
    root = root or cache_root()
    bad = 0
    for item in _selected(names, ITEMS):
        problems = verify_item(item, root)
        if problems:
            bad += 1
            for p in problems:
                _err(f"{item.name}: {p}")
        else:
            what = "not built (optional)" if item.kind == "derived" and not item.files(root) else "ok"
            print(f"{item.name:17s} {what}")
    if bad:
        _err(f"{bad} item(s) failed verification; fix: `make data` (online) or `{UNPACK_COMMAND}`")
        return 1
    print("all verified")
    return 0


# ----------------------------------------------------------------------------------------------
# pack and unpack
# ----------------------------------------------------------------------------------------------
def _tar_mode(path: Path, write: bool) -> str:
    gz = path.name.endswith((".tar.gz", ".tgz"))
    return ("w:gz" if gz else "w") if write else "r:*"


def pack(archive: Path, root: Path | None = None) -> int:
    """Write one archive of the cache: every verified dataset file and every derived cache file
    present, plus ``MANIFEST.json`` (path → SHA-256, size, item). Written to a temporary name and
    renamed, so a cut-off run leaves no half archive. Returns the exit code.

    Raises nothing for missing items (they are listed, and skipped); a dataset file that fails
    its SHA-256 check stops the pack (exit 1): run ``make data`` first.
    """
    root = root or cache_root()
    members: list[tuple[str, Path, str]] = []   # (relpath, path, item)
    missing = []
    for item in ITEMS:
        if item.kind == "package":
            continue
        problems = verify_item(item, root)
        if item.dataset is not None and problems:
            if all(p.startswith("MISSING") for p in problems):
                missing.append(item.name)
                continue
            for p in problems:
                _err(f"{item.name}: {p}")
            _err("refusing to pack a corrupt cache; run `make data` first")
            return 1
        if problems:     # a derived file that is unreadable: leave it out
            for p in problems:
                _err(f"skipped: {item.name}: {p}")
        bad = {p.split(" ", 2)[1].rstrip(":") for p in problems}
        for path in item.files(root):
            rel = path.relative_to(root).as_posix()
            if rel not in bad:
                members.append((rel, path, item.name))
    if not members:
        _err(f"nothing to pack in {display_path(root)}; run `make data` first")
        return 1
    manifest = {"format": MANIFEST_FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "files": {rel: {"sha256": sha256_file(p), "size": p.stat().st_size, "item": name}
                          for rel, p, name in members}}
    archive = Path(archive)
    archive.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{archive.name}.", suffix=".part", dir=archive.parent)
    os.close(fd)
    try:
        with tarfile.open(tmp_name, _tar_mode(archive, write=True), format=tarfile.PAX_FORMAT) as tar:
            data = json.dumps(manifest, indent=1).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
            tar.addfile(info, io.BytesIO(data))
            for rel, path, _ in members:
                tar.add(path, arcname=rel, recursive=False)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, archive)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    total = sum(v["size"] for v in manifest["files"].values())
    items = sorted({v["item"] for v in manifest["files"].values()})
    print(f"packed {len(members)} files of {', '.join(items)} ({human_size(total)} of data) into "
          f"{archive} ({human_size(archive.stat().st_size)})")
    if missing:
        _err(f"not in the cache, so not packed: {', '.join(missing)} (run `make data` first)")
    print("Python packages (MiniLM, MovieLens, scikit-learn, mlxtend) are not in the archive: see "
          "data/README.md for an offline wheelhouse.")
    return 0


def _safe_relpath(name: str) -> str:
    """A tar member name as a relative POSIX path inside the cache.

    Raises:
        DataError: absolute, ``..``, empty or backslash names (path traversal).
    """
    p = PurePosixPath(name)
    if not name or "\\" in name or p.is_absolute() or any(part in ("..", "") for part in name.split("/")) \
            or ".." in p.parts or name.startswith("/"):
        raise DataError(f"refusing archive member {name!r}: its path leaves the data cache "
                        "(absolute or '..'); the archive is not one made by `pack`")
    return p.as_posix()


def unpack(archive: Path, root: Path | None = None) -> int:
    """Verify every member of ``archive`` and only then place them all in the cache.

    Each member must be a regular file at a safe relative path, listed in the manifest, and
    either a registered dataset file (checked against the registry's SHA-256 and size, whatever
    the manifest says) or a derived cache file (checked against the manifest's SHA-256 and
    readable). Members are extracted into a staging folder inside the cache; if any check fails,
    nothing is placed (exit 1, each problem named); otherwise each file is renamed into place.

    Raises:
        Nothing to the caller: a bad archive or member raises :class:`DataError` internally,
        which is caught and reported on stderr with exit code 1.
    """
    root = root or cache_root()
    archive = Path(archive)
    if not archive.is_file():
        _err(f"{archive}: no such file (make one with `{PACK_COMMAND}`)")
        return 1
    try:
        tar = tarfile.open(archive, _tar_mode(archive, write=False))
    except (tarfile.TarError, OSError) as exc:
        _err(f"{archive}: not a readable tar archive ({exc})")
        return 1
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=root))
    problems: list[str] = []
    placed: list[str] = []
    try:
        with tar:
            members = tar.getmembers()
            for m in members:
                try:
                    _safe_relpath(m.name)
                except DataError as exc:
                    problems.append(str(exc))
                if not (m.isfile() or m.isdir()):
                    problems.append(f"refusing archive member {m.name!r}: links and special files "
                                    "are not allowed")
            if problems:
                raise DataError("\n".join(problems))
            by_name = {m.name: m for m in members if m.isfile()}
            if MANIFEST not in by_name:
                raise DataError(f"{archive.name} has no {MANIFEST}; it was not made by `pack`")
            try:
                manifest = json.loads(tar.extractfile(by_name.pop(MANIFEST)).read())
                listed = manifest["files"]
                if manifest.get("format") != MANIFEST_FORMAT or not isinstance(listed, dict):
                    raise ValueError(f"format {manifest.get('format')!r}")
            except (ValueError, KeyError, TypeError) as exc:
                raise DataError(f"{archive.name}: unreadable {MANIFEST} ({exc})") from exc
            for rel in sorted(set(listed) - set(by_name)):
                problems.append(f"{rel}: listed in the manifest but not in the archive (truncated?)")
            for rel, m in sorted(by_name.items()):
                rel = _safe_relpath(rel)
                entry = listed.get(rel)
                reg = registered_file(rel)
                derived = derived_item(rel)
                if entry is None:
                    problems.append(f"{rel}: not listed in the manifest")
                    continue
                if reg is None and derived is None:
                    problems.append(f"{rel}: not a course data file (neither registered nor a "
                                    "derived cache)")
                    continue
                if reg is not None:
                    sha, size = reg[1].sha256, reg[1].size
                    if (entry.get("sha256"), entry.get("size")) != (sha, size):
                        problems.append(f"{rel}: the manifest's SHA-256/size differ from the "
                                        "registry's")
                        continue
                else:
                    sha, size = entry.get("sha256"), entry.get("size")
                dest = staging / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                digest, n = hashlib.sha256(), 0
                src = tar.extractfile(m)
                with open(dest, "wb") as out:
                    while chunk := src.read(1 << 20):
                        digest.update(chunk)
                        n += len(chunk)
                        out.write(chunk)
                if n != size or digest.hexdigest() != sha:
                    problems.append(f"{rel}: {n} bytes, SHA-256 {digest.hexdigest()[:16]}… do not "
                                    f"match the {'registry' if reg else 'manifest'} ({size} bytes, "
                                    f"{str(sha)[:16]}…): corrupt archive")
                    continue
                if derived is not None:
                    try:
                        check_derived_file(dest)
                    except DataError as exc:
                        problems.append(f"{rel}: {exc}")
                        continue
                placed.append(rel)
        if problems:
            raise DataError("\n".join(problems))
        for rel in placed:
            final = root / rel
            final.parent.mkdir(parents=True, exist_ok=True)
            (staging / rel).chmod(0o644)
            os.replace(staging / rel, final)
    except DataError as exc:
        for line in str(exc).splitlines():
            _err(line)
        _err(f"nothing was unpacked into {display_path(root)}")
        return 1
    except (tarfile.TarError, OSError, EOFError) as exc:
        _err(f"{archive}: unreadable archive ({exc}); nothing was unpacked")
        return 1
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    total = sum(int(listed[r]["size"]) for r in placed)
    print(f"unpacked {len(placed)} verified files ({human_size(total)}) into {display_path(root)}")
    return 0


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m lmcourse.data`` (``--list``, ``fetch``, ``verify``,
    ``pack``, ``unpack``)."""
    names = ", ".join(CATALOG)
    parser = argparse.ArgumentParser(
        prog="python -m lmcourse.data",
        description="The course's data: list, fetch, verify, pack and unpack the cache "
                    "(data/ or $LMCOURSE_DATA_DIR).",
        epilog=f"Items: {names}. Workshop: `make data`, then `{PACK_COMMAND}`, copy the archive, "
               f"`{UNPACK_COMMAND}` on each machine, `LMCOURSE_OFFLINE=1 make test`.")
    parser.add_argument("--list", action="store_true", help="list every item: chapters, size, cached")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("list", help="same as --list")
    p = sub.add_parser("fetch", help="fetch and verify items (default: all)")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--no-derived", action="store_true",
                   help="skip the derived caches (embeddings take minutes on a CPU)")
    p = sub.add_parser("verify", help="re-hash every cached file (default: all items)")
    p.add_argument("names", nargs="*", metavar="NAME")
    p = sub.add_parser("pack", help="write the cache into one archive (.tar or .tar.gz)")
    p.add_argument("archive", type=Path, metavar="ARCHIVE")
    p = sub.add_parser("unpack", help="verify an archive's files and place them in the cache")
    p.add_argument("archive", type=Path, metavar="ARCHIVE")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.list or args.command == "list":
            print(list_items())
            return 0
        if args.command == "fetch":
            return fetch(args.names, derived=not args.no_derived)
        if args.command == "verify":
            return verify(args.names)
        if args.command == "pack":
            return pack(args.archive)
        if args.command == "unpack":
            return unpack(args.archive)
    except ValueError as exc:          # unknown item names
        parser.error(str(exc))
    parser.print_help()
    return 2
