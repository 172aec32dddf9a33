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
