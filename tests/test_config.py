"""The scale switch, the CPU XLA flag and the results recorder."""

from __future__ import annotations

import importlib.metadata
import json

import jax
import numpy as np
import pytest

from lmcourse import compat, config, report
from lmcourse.compat import XLA_TUNING_ENV, apply_cpu_xla_flags, cpu_xla_flag
from lmcourse.config import SCALE_ENV, get_scale, pick

FLAG_0_10 = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"


# --- get_scale / pick ------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    ("quick", "quick"), ("full", "full"), ("FULL", "full"), ("  Quick \n", "quick"),
])
def test_explicit_scale(value, expected, monkeypatch):
    monkeypatch.setattr(config, "accelerator_platform", lambda: pytest.fail("must not ask JAX"))
    assert get_scale({SCALE_ENV: value}) == expected


@pytest.mark.parametrize("env", [{}, {SCALE_ENV: ""}, {SCALE_ENV: "auto"}, {SCALE_ENV: " AUTO "}])
@pytest.mark.parametrize(("platform", "expected"), [("cpu", "quick"), ("gpu", "full"),
                                                    ("tpu", "full")])
def test_auto_scale_follows_platform(env, platform, expected, monkeypatch):
    monkeypatch.setattr(config, "accelerator_platform", lambda: platform)
    assert get_scale(env) == expected


def test_auto_scale_on_this_machine():
    expected = "quick" if jax.default_backend() == "cpu" else "full"
    assert config.accelerator_platform() == jax.default_backend()
    assert get_scale({}) == expected


@pytest.mark.parametrize("value", ["fast", "1", "quick,full", "medium"])
def test_invalid_scale(value):
    with pytest.raises(ValueError, match=SCALE_ENV) as info:
        get_scale({SCALE_ENV: value})
    message = str(info.value)
    assert repr(value.strip().lower()) in message
    assert "quick" in message and "full" in message and "auto" in message


def test_get_scale_reads_os_environ(monkeypatch):
    monkeypatch.setenv(SCALE_ENV, "full")
    assert get_scale() == "full"
    monkeypatch.setenv(SCALE_ENV, "nonsense")
    with pytest.raises(ValueError, match=SCALE_ENV):
        get_scale()


def test_pick(monkeypatch):
    assert pick(1, 2, "quick") == 1
    assert pick(1, 2, "full") == 2
    quick, full = object(), object()
    monkeypatch.setenv(SCALE_ENV, "full")
    assert pick(quick, full) is full
    monkeypatch.setenv(SCALE_ENV, "quick")
    assert pick(quick, full) is quick


# --- CPU XLA flag ----------------------------------------------------------------------------

@pytest.mark.parametrize(("version", "expected"), [
    ("0.10.0", FLAG_0_10), ("0.10.2", FLAG_0_10), ("0.10.3.dev20260101", FLAG_0_10),
    ("0.9.2", None), ("0.1.0", None), ("0.100.0", None), ("1.10.0", None), ("0.1", None),
    ("", None), ("weird", None),
])
def test_cpu_xla_flag(version, expected):
    assert cpu_xla_flag(version) == expected


@pytest.fixture
def jaxlib_version(monkeypatch):
    """Pretend an installed jaxlib version (``apply_cpu_xla_flags`` looks it up at call time)."""
    def set_version(value):
        def fake(name):
            assert name == "jaxlib"
            if value is None:
                raise importlib.metadata.PackageNotFoundError(name)
            return value
        monkeypatch.setattr(importlib.metadata, "version", fake)
    return set_version


def test_apply_adds_flag_once(jaxlib_version):
    jaxlib_version("0.10.2")
    env = {}
    assert apply_cpu_xla_flags(environ=env) == FLAG_0_10
    assert env == {"XLA_FLAGS": FLAG_0_10}
    assert apply_cpu_xla_flags(environ=env) is None  # no duplicate
    assert env["XLA_FLAGS"].count("ynn_fusion_type") == 1


def test_apply_keeps_existing_flags(jaxlib_version):
    jaxlib_version("0.10.0")
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    assert apply_cpu_xla_flags(environ=env) == FLAG_0_10
    assert env["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=2 {FLAG_0_10}"


def test_apply_respects_a_users_own_value(jaxlib_version):
    jaxlib_version("0.10.0")
    env = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=none"}
    assert apply_cpu_xla_flags(environ=env) is None
    assert env == {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=none"}


def test_apply_opt_out(jaxlib_version):
    jaxlib_version("0.10.0")
    env = {XLA_TUNING_ENV: "0", "XLA_FLAGS": "--a=1"}
    assert apply_cpu_xla_flags(environ=env) is None
    assert env == {XLA_TUNING_ENV: "0", "XLA_FLAGS": "--a=1"}
    env = {XLA_TUNING_ENV: "1"}
    assert apply_cpu_xla_flags(environ=env) == FLAG_0_10


@pytest.mark.parametrize("version", ["0.9.0", "0.11.0", "2.0.0", None])
def test_apply_unknown_or_missing_jaxlib(jaxlib_version, version):
    jaxlib_version(version)
    env = {"XLA_FLAGS": "--a=1"}
    assert apply_cpu_xla_flags(environ=env) is None
    assert env == {"XLA_FLAGS": "--a=1"}


def test_apply_with_the_installed_jaxlib():
    env = {}
    flag = apply_cpu_xla_flags(environ=env)
    assert flag == cpu_xla_flag(importlib.metadata.version("jaxlib"))
    assert env == ({} if flag is None else {"XLA_FLAGS": flag})
    assert compat.CPU_XLA_FLAGS  # every listed flag is for a major.minor version
    assert all(k.count(".") == 1 for k in compat.CPU_XLA_FLAGS)


# --- report.record ---------------------------------------------------------------------------

def test_record_writes_json(tmp_path, monkeypatch):
    out = tmp_path / "results.json"
    monkeypatch.setenv(report.RESULTS_ENV, str(out))
    value = np.float32(0.875)
    assert report.record("MNIST test accuracy", value) is value
    assert report.record("throughput", np.int64(1234), unit="images/s") == 1234
    assert report.record("device", "cpu:0") == "cpu:0"
    assert report.record("MNIST test accuracy", 0.9) == 0.9  # later value replaces earlier
    data = json.loads(out.read_text())
    assert data == {
        "MNIST test accuracy": {"value": 0.9, "unit": ""},
        "throughput": {"value": 1234, "unit": "images/s"},
        "device": {"value": "cpu:0", "unit": ""},
    }
    assert type(data["throughput"]["value"]) is int


def test_record_converts_numpy_scalars(tmp_path, monkeypatch):
    out = tmp_path / "r.json"
    monkeypatch.setenv(report.RESULTS_ENV, str(out))
    report.record("loss", np.float64(0.25))
    assert json.loads(out.read_text()) == {"loss": {"value": 0.25, "unit": ""}}


def test_record_without_results_file_is_a_no_op(tmp_path, monkeypatch):
    monkeypatch.delenv(report.RESULTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    value = {"not": "json-checked"}
    assert report.record("anything", value, unit="x") is value
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv(report.RESULTS_ENV, "")
    assert report.record("anything", 3) == 3
    assert list(tmp_path.iterdir()) == []


def test_invalid_scale_message_points_at_the_measured_run_times():
    # no typed duration: the README's table of measured run times is the source
    with pytest.raises(ValueError) as info:
        get_scale({SCALE_ENV: "huge"})
    message = str(info.value)
    assert "README" in message and "measured run time" in message
    assert "~2 min" not in message


# --- full scale on a CPU: one warning with the expected run time -----------------------------

def _runtime(scale="full", backend="cpu"):
    return config.Runtime(scale=scale, backend=backend, devices=(f"{backend}:0 ({backend})",),
                          jax_version="0", flax_version="0", optax_version="0",
                          python_version="3", cpu_count=2)


def _log(path, seconds, device="cpu:0 (cpu)"):
    path.write_text(json.dumps({"seconds": seconds, "device": device, "machine": "x86_64, 2 CPU cores"}))


def test_expected_full_minutes_measured_estimated_or_unknown(tmp_path):
    _log(tmp_path / "03_cnn.full.json", 1200.0)
    _log(tmp_path / "03_cnn.quick.json", 100.0)
    _log(tmp_path / "04_over.quick.json", 120.0)
    minutes, basis = config.expected_full_minutes("03 A CNN", tmp_path)
    assert minutes == pytest.approx(20.0) and basis.startswith("measured: 03_cnn.full.json")
    minutes, basis = config.expected_full_minutes("04 Overfitting", tmp_path)
    assert minutes == pytest.approx(120.0 * config.FULL_OVER_QUICK_ESTIMATE / 60)
    assert basis.startswith("an estimate") and "04_over.quick.json" in basis
    assert config.expected_full_minutes("07 Missing", tmp_path) is None


def test_expected_full_minutes_from_the_committed_logs():
    log = json.loads((config.RESULTS_DIR / "03_cnn_jit.full.json").read_text())
    minutes, basis = config.expected_full_minutes("03 A CNN in Flax with jit")
    assert minutes == pytest.approx(log["seconds"] / 60) and "measured" in basis


def test_setup_notebook_warns_once_for_full_scale_on_cpu(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(report.RESULTS_ENV, raising=False)
    monkeypatch.setattr(config, "describe_runtime", lambda: _runtime("full", "cpu"))
    _log(tmp_path / "03_cnn.full.json", 1500.0)
    monkeypatch.setattr(config, "RESULTS_DIR", tmp_path)
    with pytest.warns(config.FullScaleOnCpuWarning) as record:
        config.setup_notebook("03 A CNN")
    assert len(record) == 1
    message = str(record[0].message)
    assert "about 25 min" in message and "measured: 03_cnn.full.json" in message
    assert f"{SCALE_ENV}=quick" in message
    assert capsys.readouterr().out.startswith("[03 A CNN] ")


@pytest.mark.parametrize(("scale", "backend"), [("quick", "cpu"), ("full", "gpu"), ("quick", "gpu")])
def test_no_warning_when_the_scale_fits(scale, backend, monkeypatch, recwarn):
    monkeypatch.delenv(report.RESULTS_ENV, raising=False)
    monkeypatch.setattr(config, "describe_runtime", lambda: _runtime(scale, backend))
    config.setup_notebook("03 A CNN")
    assert not [w for w in recwarn if issubclass(w.category, config.FullScaleOnCpuWarning)]


def test_full_scale_warning_without_any_log(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "RESULTS_DIR", tmp_path)
    with pytest.warns(config.FullScaleOnCpuWarning, match="no run time is recorded"):
        assert config.warn_full_scale_on_cpu("11 New", _runtime())


# --- JAX_PLATFORMS=cuda without a CUDA jaxlib --------------------------------------------------

def test_gpu_requested_but_missing_gives_the_course_message(monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "cuda")
    monkeypatch.setattr(config, "_cuda_plugin", lambda: None)

    def jax_fails():
        raise AssertionError  # what jax 0.10.2 raises when the cuda backend cannot start

    with pytest.raises(RuntimeError) as info:
        config.jax_call(jax_fails)
    message = str(info.value)
    assert "pip install -r requirements-gpu.txt" in message and "no CUDA support" in message
    assert "unset JAX_PLATFORMS" in message and "AssertionError" in message


def test_other_backend_errors_pass_through(monkeypatch):
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)

    def jax_fails():
        raise ValueError("something else")

    with pytest.raises(ValueError, match="something else"):
        config.jax_call(jax_fails)


def test_jax_platforms_cuda_on_this_machine(tmp_path):
    """In a fresh interpreter: JAX_PLATFORMS=cuda, and the real jax, give the course message."""
    import os
    import subprocess
    import sys

    if config._cuda_plugin() is not None:
        pytest.skip("a CUDA plugin is installed here; the message path needs a CPU-only jaxlib")
    env = {**os.environ, "JAX_PLATFORMS": "cuda"}
    result = subprocess.run([sys.executable, "-c", "from lmcourse.config import describe_runtime; "
                             "describe_runtime()"], env=env, capture_output=True, text=True,
                            timeout=300, cwd=tmp_path)
    assert result.returncode != 0
    assert "RuntimeError: JAX_PLATFORMS='cuda' asks for a GPU" in result.stderr
    assert "requirements-gpu.txt" in result.stderr


# --- setup_notebook(needs=...) -----------------------------------------------------------------

@pytest.fixture
def fake_catalog(monkeypatch):
    import sys
    import types

    calls = []
    module = types.ModuleType("lmcourse.data.catalog")
    module.require = lambda names: calls.append(list(names))
    monkeypatch.setitem(sys.modules, "lmcourse.data.catalog", module)
    monkeypatch.delenv(report.RESULTS_ENV, raising=False)
    monkeypatch.setattr(config, "describe_runtime", lambda: _runtime("quick", "cpu"))
    return calls


def test_setup_notebook_requires_the_needed_data_after_the_runtime_line(fake_catalog, capsys):
    config.setup_notebook("06 NLP", needs=("vader", "minilm"))
    assert fake_catalog == [["vader", "minilm"]]
    assert capsys.readouterr().out.startswith("[06 NLP] scale=quick")


def test_setup_notebook_without_needs_requires_nothing(fake_catalog):
    assert config.setup_notebook("00 Setup").scale == "quick"
    assert fake_catalog == []


def test_setup_notebook_rejects_a_single_string(fake_catalog):
    with pytest.raises(ValueError, match=r"needs=\['mnist'\]"):
        config.setup_notebook("03", needs="mnist")
    assert fake_catalog == []
