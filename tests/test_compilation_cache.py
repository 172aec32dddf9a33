"""The persistent compilation cache ``import lmcourse`` turns on (lmcourse.compat.enable_compilation_cache).

Each case runs in a fresh Python process: JAX reads its cache settings once, before the first
compilation, and this test process has compiled long ago.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lmcourse.compat import COMPILATION_CACHE_FOLDER, enable_compilation_cache

PROBE = """
import json, lmcourse, jax, numpy as np
from flax import nnx
from lmcourse.models import CNN
model = CNN(nnx.Rngs(0))
out = model(np.ones((2, 28, 28, 1), np.float32))
print(json.dumps({"dir": jax.config.jax_compilation_cache_dir,
                  "logits": np.asarray(out).tolist()}))
"""


def _run(env_changes: dict[str, str | None]) -> dict:
    env = dict(os.environ)
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    proc = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                          timeout=300, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def data_dir(tmp_path):
    return {"LMCOURSE_DATA_DIR": str(tmp_path), "JAX_COMPILATION_CACHE_DIR": None,
            "LMCOURSE_JAX_CACHE": None}


def test_cache_is_written_in_the_data_folder_and_reused_with_identical_results(data_dir, tmp_path):
    cold = _run(data_dir)
    folder = tmp_path / COMPILATION_CACHE_FOLDER
    assert cold["dir"] == str(folder)
    entries = sorted(p.name for p in folder.iterdir())
    assert len(entries) >= 5, entries                  # the initialisers and the forward pass
    warm = _run(data_dir)
    assert warm["logits"] == cold["logits"]            # bit-identical, loaded or compiled
    assert sorted(p.name for p in folder.iterdir()) == entries   # nothing new: all were reused


def test_opting_out_leaves_the_cache_off(data_dir, tmp_path):
    off = _run({**data_dir, "LMCOURSE_JAX_CACHE": "0"})
    assert not off["dir"]
    assert not (tmp_path / COMPILATION_CACHE_FOLDER).exists()


def test_a_folder_the_user_chose_is_kept(data_dir, tmp_path):
    own = tmp_path / "mine"
    result = _run({**data_dir, "JAX_COMPILATION_CACHE_DIR": str(own)})
    assert result["dir"] == str(own)     # (with JAX's own thresholds: small programs not cached)
    assert not (tmp_path / COMPILATION_CACHE_FOLDER).exists()


def test_opt_out_is_read_from_the_given_environment():
    assert enable_compilation_cache({"LMCOURSE_JAX_CACHE": "0"}) is None
