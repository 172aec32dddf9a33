"""Sentence embeddings saved in the data cache: one NPZ file per (model, texts, settings),
checked when it is read back.

Used in chapters: 08; imported by ``lmcourse.data.catalog``, ``lmcourse.multitask``,
``lmcourse.recsys``.

Encoding a few thousand sentences with MiniLM takes a minute or more on a CPU, so the chapters
compute sentence embeddings once and reuse them. The file name is a hash (:func:`cache_key`) of
everything the numbers depend on: the model (the SHA-256 of its files, or of its parameters for a
model held in memory, :func:`params_digest`), the inputs (texts or token ids) and the settings
(pooling, normalisation…). Change any of them and the key changes, so a stale file is never
read. The NPZ file holds the matrix, the key and the settings; :func:`read_embeddings` checks
the key, the shape and that every value is finite, and :func:`cached_embeddings` recomputes (and
rewrites) a file that fails. Files are written to a temporary name and renamed, so a run killed
mid-write leaves no half file behind.

This module imports no JAX (the data layer checks these files without it); :func:`params_digest`
imports Flax when called.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

#: Bumped when the file layout changes: part of every key, so old files are not read.
FORMAT = 1


def _feed(h: Any, part: object) -> None:
    """Add one key part to the hash ``h``, unambiguously (type tag and length before the bytes)."""
    if isinstance(part, str):
        tag, data = b"s", part.encode()
    elif isinstance(part, bytes):
        tag, data = b"b", part
    elif isinstance(part, np.ndarray):
        tag = f"a{part.dtype.str}{part.shape}".encode()
        data = np.ascontiguousarray(part).tobytes()
    elif isinstance(part, Mapping):
        tag, data = b"j", json.dumps(part, sort_keys=True, default=str).encode()
    else:
        raise TypeError(f"a key part must be str, bytes, a NumPy array or a mapping, got "
                        f"{type(part).__name__}")
    h.update(tag + b":" + str(len(data)).encode() + b":")
    h.update(data)


def cache_key(model: str, inputs: Iterable[object], settings: Mapping[str, Any]) -> str:
    """A 24-hex-digit SHA-256 key of a model, its inputs and the settings of the computation.

    Args:
        model: what identifies the model, e.g. the SHA-256 of its files (:func:`files_digest`) or
            of its parameters (:func:`params_digest`).
        inputs: the inputs in order: strings (texts), bytes, or NumPy arrays (token ids and masks:
            dtype and shape are part of the key).
        settings: anything else the result depends on (JSON-serialisable values).

    Returns:
        24 lowercase hex digits (96 bits: no collision in any cache this course builds).

    Raises:
        TypeError: an input of another type.
    """
    h = hashlib.sha256()
    for part in (f"format {FORMAT}", model, *inputs, dict(settings)):
        _feed(h, part)
    return h.hexdigest()[:24]


def files_digest(sha256: Mapping[str, str]) -> str:
    """One SHA-256 over a model's files, given ``{file name: its SHA-256}`` (for example
    ``lmcourse.data.pretrained.MINILM_L6.sha256``, whose files are checked when loaded)."""
    return hashlib.sha256(json.dumps(dict(sha256), sort_keys=True).encode()).hexdigest()


def params_digest(model: Any) -> str:
    """SHA-256 of a Flax NNX module's parameters (paths, dtypes, shapes and values), so a
    fine-tuned encoder never reads the features of the pretrained one. About 0.2 s for MiniLM's
    22.7 M parameters.

    Raises:
        TypeError: ``model`` is not a Flax NNX module (or graph node).
    """
    import jax
    from flax import nnx

    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_leaves_with_path(nnx.state(model, nnx.Param)):
        _feed(h, jax.tree_util.keystr(path))
        _feed(h, np.asarray(leaf))
    return h.hexdigest()


def read_embeddings(path: str | Path, key: str | None = None, n_rows: int | None = None
                    ) -> np.ndarray:
    """The float32 ``(n, d)`` matrix saved in an embedding cache file, checked.

    Args:
        path: an ``.npz`` file written by :func:`cached_embeddings`.
        key: if given, the key the file must hold (the one its name was made from).
        n_rows: if given, the number of rows it must have (one per input).

    Raises:
        ValueError: the file is unreadable or truncated, lacks the ``embeddings``/``key``
            arrays, holds another key, or the matrix is not a finite 2-D float matrix with
            ``n_rows`` rows; the message names the file and what is wrong.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            emb, stored = f["embeddings"], str(f["key"])
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path.name}: not a readable embedding cache ({exc})") from exc
    if key is not None and stored != key:
        raise ValueError(f"{path.name}: holds the embeddings of key {stored}, not {key}")
    if emb.ndim != 2 or emb.dtype != np.float32 or (n_rows is not None and len(emb) != n_rows):
        raise ValueError(f"{path.name}: expected float32 ({n_rows if n_rows is not None else 'n'}, "
                         f"d), got {emb.dtype} {emb.shape}")
    if not np.all(np.isfinite(emb)):
        raise ValueError(f"{path.name}: contains NaN or infinite values")
    return emb


def _write(path: Path, emb: np.ndarray, key: str, settings: Mapping[str, Any]) -> None:
    """Save atomically: a temporary file in the same folder, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, embeddings=emb, key=np.array(key),
                     settings=np.array(json.dumps(dict(settings), sort_keys=True, default=str)))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached_embeddings(compute: Callable[[], Any], *, directory: str | Path | None, prefix: str,
                      model: str, inputs: Iterable[object], settings: Mapping[str, Any],
                      n_rows: int) -> np.ndarray:
    """``compute()`` as a float32 ``(n_rows, d)`` matrix, read from the cache when a valid file
    for the same model, inputs and settings exists, else computed and saved.

    The file is ``directory / f"{prefix}-{cache_key(model, inputs, settings)}.npz"``; a file
    that fails :func:`read_embeddings` (truncated, wrong shape, NaN) is recomputed and replaced,
    with a warning.

    Args:
        compute: computes the embeddings (called only on a cache miss).
        directory: the cache folder (inside the data cache, e.g. ``cache_root() / "vader"``);
            ``None`` computes without caching.
        prefix: the start of the file name, saying what it holds (``"emb-minilm"``).
        model, inputs, settings: as in :func:`cache_key`.
        n_rows: the number of rows expected (one per input sentence).

    Returns:
        float32 ``(n_rows, d)``.

    Raises:
        ValueError: ``compute()`` gave something else than a finite ``(n_rows, d)`` matrix.
    """
    path = None
    inputs = list(inputs)
    if directory is not None:
        key = cache_key(model, inputs, settings)
        path = Path(directory) / f"{prefix}-{key}.npz"
        if path.is_file():
            try:
                return read_embeddings(path, key, n_rows)
            except ValueError as exc:
                warnings.warn(f"recomputing the embedding cache: {exc}", stacklevel=2)
    emb = np.asarray(compute(), dtype=np.float32)
    if emb.ndim != 2 or len(emb) != n_rows or not np.all(np.isfinite(emb)):
        raise ValueError(f"the embeddings computed have shape {emb.shape} (finite: "
                         f"{bool(np.all(np.isfinite(emb)))}), expected a finite ({n_rows}, d) "
                         "matrix")
    if path is not None:
        _write(path, emb, key, settings)
    return emb
