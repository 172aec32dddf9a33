"""Tests of lmcourse.embedding_cache: one NPZ file per (model, inputs, settings), checked on
load, recomputed when broken; and the two users (multitask.embed_cached, recsys.movie_embeddings)
go through it."""

import numpy as np
import pytest
from flax import nnx

import lmcourse  # noqa: F401  (sets the CPU XLA flag before the first computation)
from lmcourse import embedding_cache as E


class _Counter:
    def __init__(self, emb):
        self.emb, self.calls = emb, 0

    def __call__(self):
        self.calls += 1
        return self.emb


def _args(**over):
    args = {"prefix": "emb-test", "model": "m1", "inputs": ["a", "b"], "settings": {"pool": "mean"},
            "n_rows": 2}
    return args | over


def test_cache_miss_then_hit_and_the_file_holds_key_and_settings(tmp_path):
    compute = _Counter(np.arange(6, dtype=np.float64).reshape(2, 3))
    first = E.cached_embeddings(compute, directory=tmp_path, **_args())
    again = E.cached_embeddings(compute, directory=tmp_path, **_args())
    assert compute.calls == 1 and first.dtype == np.float32
    np.testing.assert_array_equal(first, again)
    (path,) = tmp_path.glob("*")
    key = E.cache_key("m1", ["a", "b"], {"pool": "mean"})
    assert path.name == f"emb-test-{key}.npz"
    with np.load(path) as f:
        assert str(f["key"]) == key and "mean" in str(f["settings"])
    np.testing.assert_array_equal(E.read_embeddings(path, key, 2), first)


@pytest.mark.parametrize("change", [{"model": "m2"}, {"inputs": ["a", "c"]},
                                    {"settings": {"pool": "cls"}},
                                    {"inputs": [np.array([1, 2], np.int32)]},
                                    {"inputs": [np.array([1, 2], np.int64)]}])
def test_any_change_of_model_inputs_or_settings_is_a_new_key(tmp_path, change):
    compute = _Counter(np.ones((2, 3)))
    E.cached_embeddings(compute, directory=tmp_path, **_args())
    E.cached_embeddings(compute, directory=tmp_path, **_args(**change))
    assert compute.calls == 2 and len(list(tmp_path.glob("*.npz"))) == 2


def test_key_parts_are_unambiguous():
    assert E.cache_key("m", ["ab", "c"], {}) != E.cache_key("m", ["a", "bc"], {})
    assert E.cache_key("m", [np.zeros((2, 3))], {}) != E.cache_key("m", [np.zeros((3, 2))], {})
    with pytest.raises(TypeError, match="key part"):
        E.cache_key("m", [3.5], {})


def test_a_broken_file_is_recomputed_with_a_warning(tmp_path):
    compute = _Counter(np.ones((2, 3)))
    E.cached_embeddings(compute, directory=tmp_path, **_args())
    (path,) = tmp_path.glob("*.npz")
    path.write_bytes(path.read_bytes()[:40])                       # truncated
    with pytest.warns(UserWarning, match="recomputing"):
        out = E.cached_embeddings(compute, directory=tmp_path, **_args())
    assert compute.calls == 2 and out.shape == (2, 3)
    assert E.read_embeddings(path).shape == (2, 3)                 # rewritten, whole again
    assert not list(tmp_path.glob(".*part"))                       # no temporary file left


def test_read_embeddings_rejects_wrong_key_shape_and_nan(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, embeddings=np.ones((2, 3), np.float32), key=np.array("k1"))
    assert E.read_embeddings(path, "k1", 2).shape == (2, 3)
    with pytest.raises(ValueError, match="key k1, not k2"):
        E.read_embeddings(path, "k2")
    with pytest.raises(ValueError, match=r"expected float32 \(3, d\)"):
        E.read_embeddings(path, n_rows=3)
    np.savez(path, embeddings=np.array([[1.0, np.nan]], np.float32), key=np.array("k"))
    with pytest.raises(ValueError, match="NaN"):
        E.read_embeddings(path)
    np.savez(path, other=np.ones(2))
    with pytest.raises(ValueError, match="not a readable embedding cache"):
        E.read_embeddings(path)


def test_no_directory_computes_every_time_and_bad_results_are_refused(tmp_path):
    compute = _Counter(np.ones((2, 3)))
    E.cached_embeddings(compute, directory=None, **_args())
    E.cached_embeddings(compute, directory=None, **_args())
    assert compute.calls == 2
    for bad in (np.ones((3, 3)), np.ones(2), np.array([[np.nan], [1.0]])):
        with pytest.raises(ValueError, match=r"expected a finite \(2, d\) matrix"):
            E.cached_embeddings(_Counter(bad), directory=tmp_path, **_args())
    assert not list(tmp_path.glob("*"))


def test_params_digest_sees_every_parameter_change():
    layer = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    before = E.params_digest(layer)
    assert E.params_digest(nnx.Linear(3, 2, rngs=nnx.Rngs(0))) == before
    layer.bias[...] = layer.bias[...].at[0].add(1e-6)
    assert E.params_digest(layer) != before
    assert E.files_digest({"a": "1", "b": "2"}) == E.files_digest({"b": "2", "a": "1"})
