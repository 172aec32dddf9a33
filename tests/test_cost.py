"""lmcourse.cost: GPT-3's 6ND compute equals the published figure, the chain of formulas, the
Pareto front, and clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest

from lmcourse import cost


def test_gpt3_six_nd_matches_brown_et_al_table_d1():
    flops = cost.training_flops(cost.GPT3_PARAMS, cost.GPT3_TOKENS)
    assert flops == pytest.approx(3.15e23)
    assert abs(flops / cost.GPT3_PUBLISHED_FLOPS - 1) < 0.005      # 3.15e23 vs 3.14e23


def test_hours_dollars_energy_co2_chain():
    hours = cost.accelerator_hours(3.6e18, 1e12, 0.5)                 # 3.6e18 / 5e11 / 3600
    assert hours == pytest.approx(2000.0)
    assert cost.implied_mfu(3.6e18, hours, 1e12) == pytest.approx(0.5)
    assert cost.dollars(hours, 2.5) == pytest.approx(5000.0)
    kwh = cost.energy_kwh(hours, 400.0, pue=1.1)
    assert kwh == pytest.approx(2000 * 0.4 * 1.1)
    assert cost.co2e_kg(kwh, 0.5) == pytest.approx(440.0)
    assert cost.run_energy_kwh(3600.0, 10.0) == pytest.approx(0.01)


def test_patterson_intensity_is_derived_from_the_table():
    assert cost.PATTERSON_GPT3_KG_PER_KWH == pytest.approx(552 / 1287)
    kg = cost.co2e_kg(cost.PATTERSON_GPT3_MWH * 1000, cost.PATTERSON_GPT3_KG_PER_KWH)
    assert kg / 1000 == pytest.approx(cost.PATTERSON_GPT3_T_CO2E)


def test_pareto_front():
    costs = np.array([1.0, 2.0, 3.0, 4.0, 2.5])
    losses = np.array([3.0, 2.0, 2.5, 1.0, 2.0])
    assert cost.pareto_front(costs, losses).tolist() == [True, True, False, True, False]


@pytest.mark.parametrize("call, match", [
    (lambda: cost.training_flops(-1.0, 1e9), "params"),
    (lambda: cost.accelerator_hours(1e20, 1e12, 1.5), "mfu"),
    (lambda: cost.accelerator_hours(1e20, 1e12, 0.0), "mfu"),
    (lambda: cost.energy_kwh(10.0, 300.0, pue=0.9), "pue"),
    (lambda: cost.co2e_kg(10.0, -0.1), "kg_per_kwh"),
    (lambda: cost.dollars(float("nan"), 2.0), "accel_hours"),
    (lambda: cost.pareto_front([1.0, 2.0], [1.0]), "same length"),
])
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
