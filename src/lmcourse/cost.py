"""What training costs: FLOPs, accelerator-hours, dollars, energy and CO2e, from stated inputs.

Used in chapters: 11.

Every function is a pure formula on numbers the caller states; the published constants below
carry their source. The chain is

    C = 6·N·D  →  hours = C / (peak · MFU) / 3600  →  $ = hours · price
                                                →  kWh = hours · watts · PUE / 1000  →  kg CO2e = kWh · intensity

Sources: Kaplan et al. (2020) §2.1 (``C ≈ 6·N·D``: 2 FLOPs per parameter per token forward, 4
backward); Brown et al. (2020), *Language Models are Few-Shot Learners*, Table 2.1 (GPT-3:
175B parameters) and Table D.1 (300B training tokens; 3.14e23 training FLOPs); Patterson et al.
(2021), *Carbon Emissions and Large Neural Network Training*, Table 4 (GPT-3: 1,287 MWh,
552 t CO2e); NVIDIA's product pages for peak throughput and board power; AWS's EC2 Capacity
Blocks pricing page for a price per GPU-hour. **MFU** (model FLOPs utilisation 模型算力利用率)
is the fraction of the accelerator's peak that the training actually achieves (Chowdhery et
al. 2022, PaLM, §4.1 and Appendix B); **PUE** (power usage effectiveness 数据中心能源使用效率) is the
datacenter's total power over the IT equipment's power (1.0 would be no overhead).
"""

from __future__ import annotations

import numpy as np

from lmcourse.validation import check_float, check_nonnegative_float, check_positive_float

#: GPT-3 175B: parameters (Brown et al. 2020, Table 2.1).
GPT3_PARAMS = 175e9
#: GPT-3: training tokens (Brown et al. 2020, Table D.1 and §2.2: 300 billion tokens).
GPT3_TOKENS = 300e9
#: GPT-3: total training compute as published (Brown et al. 2020, Table D.1: 3.14E+23 FLOPs).
GPT3_PUBLISHED_FLOPS = 3.14e23
#: NVIDIA V100: peak mixed-precision tensor-core throughput, "up to 125 Tensor TFLOPS" (NVIDIA,
#: Tesla V100 product material and "Programming Tensor Cores in CUDA 9", 2017).
V100_TENSOR_PEAK_FLOPS = 125e12
#: NVIDIA V100 SXM2: maximum board power 300 W (NVIDIA V100 datasheet; the PCIe card: 250 W).
V100_SXM2_WATTS = 300.0
#: NVIDIA A100 (SXM4): dense BF16/FP16 tensor-core peak 312 TFLOPS (NVIDIA A100 datasheet).
A100_BF16_PEAK_FLOPS = 312e12
#: NVIDIA A100 SXM4: maximum board power 400 W (NVIDIA A100 datasheet).
A100_SXM4_WATTS = 400.0
#: AWS EC2 Capacity Blocks for ML, p4d.24xlarge (8 x A100), US East (Ohio) / US West (Oregon):
#: effective accelerator hourly rate 1.844 USD, the rate on AWS's pricing page "scheduled to be
#: updated on January 1, 2025" (i.e. late 2024). Prices change: restate with the date.
AWS_A100_USD_PER_GPU_HOUR = 1.844
#: Patterson et al. (2021), Table 4: GPT-3's training energy, 1,287 MWh.
PATTERSON_GPT3_MWH = 1287.0
#: Patterson et al. (2021), Table 4: GPT-3's training emissions, 552 t CO2e.
PATTERSON_GPT3_T_CO2E = 552.0
#: Patterson et al. (2021), Table 4, the datacenter's gross carbon intensity, 0.429 kg CO2e per kWh
#: (equal to their 552 t / 1,287 MWh, which is how it is computed here).
PATTERSON_GPT3_KG_PER_KWH = PATTERSON_GPT3_T_CO2E * 1000 / (PATTERSON_GPT3_MWH * 1000)


def training_flops(params: float, tokens: float, flops_per_param_token: float = 6.0) -> float:
    """Training compute ``C = k·N·D`` FLOPs (``k = 6``: Kaplan et al. 2020 §2.1).

    The rule counts the matrix multiplications with the weights (2 FLOPs per parameter per
    token forward, 4 backward); attention's ``n_ctx``-dependent part and the optimizer are left
    out (small for large models with a short context).

    Args:
        params: ``N`` parameters > 0 (non-embedding in Kaplan's convention, total in Hoffmann's).
        tokens: ``D`` training tokens > 0.
        flops_per_param_token: ``k`` > 0 (6 for training; 2 for one forward pass).

    Returns:
        FLOPs (float).

    Raises:
        ValueError: an argument is not a finite number > 0.
    """
    return (check_positive_float("flops_per_param_token", flops_per_param_token)
            * check_positive_float("params", params) * check_positive_float("tokens", tokens))


def accelerator_hours(flops: float, peak_flops_per_s: float, mfu: float) -> float:
    """Accelerator-hours to do ``flops`` at a fraction ``mfu`` of the peak: ``C / (peak·MFU) / 3600``.

    Args:
        flops: FLOPs > 0.
        peak_flops_per_s: one accelerator's peak FLOP/s (> 0) in the precision used.
        mfu: model FLOPs utilisation in (0, 1].

    Returns:
        hours of one accelerator (divide by the number of accelerators for wall-clock hours).

    Raises:
        ValueError: ``flops`` or ``peak_flops_per_s`` not > 0, or ``mfu`` not in (0, 1].
    """
    peak = check_positive_float("peak_flops_per_s", peak_flops_per_s)
    u = check_float("mfu", mfu, 0.0, 1.0, low_open=True)
    return check_positive_float("flops", flops) / (peak * u) / 3600.0


def implied_mfu(flops: float, accel_hours: float, peak_flops_per_s: float) -> float:
    """The utilisation a reported run implies: ``C / (hours · 3600 · peak)``.

    Raises:
        ValueError: an argument is not a finite number > 0.
    """
    return check_positive_float("flops", flops) / (
        check_positive_float("accel_hours", accel_hours) * 3600.0
        * check_positive_float("peak_flops_per_s", peak_flops_per_s))


def dollars(accel_hours: float, usd_per_hour: float) -> float:
    """Rental cost in USD: accelerator-hours times the price per accelerator-hour.

    Raises:
        ValueError: an argument is not a finite number >= 0.
    """
    return (check_nonnegative_float("accel_hours", accel_hours)
            * check_nonnegative_float("usd_per_hour", usd_per_hour))


def energy_kwh(accel_hours: float, watts: float, pue: float = 1.0) -> float:
    """Energy in kWh drawn from the grid: ``hours · watts · PUE / 1000``.

    Args:
        accel_hours: hours of one device (or device-hours of many), >= 0.
        watts: average power of one device (and its share of the server), > 0.
        pue: power usage effectiveness of the datacenter, >= 1 (1.0: no cooling/overhead).

    Returns:
        kWh (float).

    Raises:
        ValueError: ``accel_hours`` < 0, ``watts`` not > 0, or ``pue`` < 1 (a PUE below 1 would
            mean the datacenter makes energy).
    """
    hours = check_nonnegative_float("accel_hours", accel_hours)
    w = check_positive_float("watts", watts)
    return hours * w * check_float("pue", pue, 1.0) / 1000.0


def co2e_kg(kwh: float, kg_per_kwh: float) -> float:
    """Emissions in kg CO2e: energy times the grid's carbon intensity.

    Args:
        kwh: energy >= 0.
        kg_per_kwh: carbon intensity of the electricity, kg CO2e per kWh, >= 0 (e.g. about 0.43
            for the grid Patterson et al. 2021 used for GPT-3; near 0 for hydro or nuclear).

    Raises:
        ValueError: an argument is not a finite number >= 0.
    """
    return check_nonnegative_float("kwh", kwh) * check_nonnegative_float("kg_per_kwh", kg_per_kwh)


def run_energy_kwh(seconds: float, watts: float) -> float:
    """Energy of a measured run: ``seconds · watts / 3.6e6`` kWh (no PUE: a laptop has none).

    Raises:
        ValueError: ``seconds`` < 0 or ``watts`` not > 0.
    """
    return (check_nonnegative_float("seconds", seconds) * check_positive_float("watts", watts)
            / 3.6e6)


def pareto_front(costs: object, losses: object) -> np.ndarray:
    """Which points are on the Pareto front of "lower cost, lower loss" (both minimised).

    A point is on the front when no other point has a cost ``<=`` and a loss ``<=`` with at
    least one strictly lower (it is not *dominated*).

    Args:
        costs: float ``(k,)`` (e.g. training seconds, latency, dollars), finite.
        losses: float ``(k,)`` (e.g. held-out loss, error rate), finite.

    Returns:
        bool ``(k,)``: True on the front.

    Raises:
        ValueError: shapes differ, not 1-D, empty, or values not finite.
    """
    c, v = np.asarray(costs, dtype=np.float64), np.asarray(losses, dtype=np.float64)
    if c.ndim != 1 or v.shape != c.shape or c.size == 0:
        raise ValueError(f"costs and losses must be non-empty 1-D arrays of the same length, got "
                         f"shapes {c.shape} and {v.shape}")
    if not (np.all(np.isfinite(c)) and np.all(np.isfinite(v))):
        raise ValueError("costs and losses must be finite")
    no_worse = (c[None, :] <= c[:, None]) & (v[None, :] <= v[:, None])
    better = (c[None, :] < c[:, None]) | (v[None, :] < v[:, None])
    return ~np.any(no_worse & better, axis=1)
