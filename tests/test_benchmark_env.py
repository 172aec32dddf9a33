"""benchmarks/_env.py: the alternating-rounds driver and summaries every benchmark script uses."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "_env", Path(__file__).resolve().parents[1] / "benchmarks" / "_env.py")
_env = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_env)


def test_parse_variants_splits_strips_and_expands_all():
    known = ["jax-course", "torch-eager", "keras-fit"]
    assert _env.parse_variants("torch-eager, jax-course", known) == ["torch-eager", "jax-course"]
    assert _env.parse_variants("all", known) == known


def test_parse_variants_names_the_unknown_ones():
    with pytest.raises(ValueError, match=r"unknown variant\(s\) \['jax'\]; known: \['jax-course'\]"):
        _env.parse_variants("jax-course,jax", ["jax-course"])


def test_frameworks_alternate_and_each_round_starts_elsewhere():
    order = _env.interleave([["j1", "j2"], ["t1"], ["k1"]])
    assert order == ["j1", "t1", "k1", "j2"]
    calls = []
    runs = _env.run_rounds(order, 3, lambda peer, rnd: calls.append((rnd, peer)) or rnd)
    assert [p for r, p in calls if r == 0] == ["j1", "t1", "k1", "j2"]
    assert [p for r, p in calls if r == 1] == ["t1", "k1", "j2", "j1"]
    assert runs == {p: [0, 1, 2] for p in order}
    with pytest.raises(ValueError, match="at least one round"):
        _env.run_rounds(order, 0, lambda peer, rnd: None)


def test_summaries_skip_failed_rounds_and_give_ratios_to_the_baseline():
    runs = {"a": [{"rate": 10.0}, {"error": "boom"}, {"rate": 30.0}],
            "b": [{"rate": 5.0}, {"rate": 15.0}],
            "c": [{"error": "no torch"}]}
    s = _env.summarize_rounds(["a", "b", "c"], runs, [("rate", "spread")], baseline="b",
                              ratios=[("rate", "vs_b")])
    assert s["a"]["rate"] == 20.0 and (s["a"]["rate_min"], s["a"]["rate_max"]) == (10.0, 30.0)
    assert s["a"]["rounds_failed"] == 1 and s["a"]["error"] == "boom"
    assert s["a"]["vs_b"] == pytest.approx(2.0) and s["b"]["vs_b"] == pytest.approx(1.0)
    assert s["c"] == {"error": "no torch"}


def test_a_script_exits_with_usage_on_an_unknown_variant_and_frameworks_alternate():
    import argparse

    parser = argparse.ArgumentParser(prog="bench")
    assert _env.variants_or_exit(parser, "jax-a", ["jax-a", "torch-b"]) == ["jax-a"]
    with pytest.raises(SystemExit) as exit_info:
        _env.variants_or_exit(parser, "keras", ["jax-a", "torch-b"])
    assert exit_info.value.code == 2
    assert _env.by_framework(["jax-a", "jax-b", "torch-c"], ("jax", "torch")) == ["jax-a", "torch-c",
                                                                                 "jax-b"]
