"""The scale switch and the device report that every notebook prints at its top.

One environment variable, ``LMCOURSE_SCALE``, chooses how much work each notebook does:

* ``quick``: sized for a 2-core CPU and CI (what a workshop laptop uses; the README lists each
  chapter's measured run time, generated from ``results/*.quick.json``);
* ``full``: the sizes that reproduce the reference results in ``COURSE.md`` (meant for a GPU);
* ``auto`` (the default, also when the variable is unset): ``full`` when JAX sees a GPU or TPU,
  ``quick`` otherwise.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from typing import Literal

Scale = Literal["quick", "full"]
SCALE_ENV = "LMCOURSE_SCALE"
_VALID = ("quick", "full", "auto")


def accelerator_platform() -> str:
    """Return the platform of JAX's default backend: ``"cpu"``, ``"gpu"`` or ``"tpu"``."""
    import jax

    return jax.default_backend()


def get_scale(env: dict[str, str] | None = None) -> Scale:
    """Resolve the course scale from ``LMCOURSE_SCALE`` (``quick``, ``full`` or ``auto``).

    Args:
        env: mapping to read the variable from; ``os.environ`` when ``None`` (tests pass a dict).

    Returns:
        ``"quick"`` or ``"full"``. ``auto`` (or unset/empty) gives ``"full"`` on a GPU/TPU and
        ``"quick"`` on a CPU.

    Raises:
        ValueError: if the variable holds anything other than quick, full or auto.
    """
    env = os.environ if env is None else env
    value = env.get(SCALE_ENV, "auto").strip().lower() or "auto"
    if value not in _VALID:
        raise ValueError(
            f"{SCALE_ENV}={value!r} is not a scale. Use one of {', '.join(_VALID)}, e.g. "
            f"`export {SCALE_ENV}=quick` (sized for a 2-core CPU and CI; the README lists each "
            f"chapter's measured run time) or `{SCALE_ENV}=full`."
        )
    if value == "auto":
        return "quick" if accelerator_platform() == "cpu" else "full"
    return value  # type: ignore[return-value]


def pick(quick, full, scale: Scale | None = None):
    """Return ``quick`` or ``full`` according to the scale (``get_scale()`` when ``None``)."""
    return full if (scale or get_scale()) == "full" else quick


@dataclass(frozen=True)
class Runtime:
    """What a notebook runs on: printed at its top and stored in the course report."""

    scale: Scale
    backend: str
    devices: tuple[str, ...]
    jax_version: str
    flax_version: str
    optax_version: str
    python_version: str
    cpu_count: int

    def __str__(self) -> str:
        return (
            f"scale={self.scale} ({SCALE_ENV}={os.environ.get(SCALE_ENV, 'auto')!s}) | "
            f"backend={self.backend} | devices={', '.join(self.devices)} | "
            f"jax {self.jax_version}, flax {self.flax_version}, optax {self.optax_version}, "
            f"Python {self.python_version}, {self.cpu_count} CPU cores"
        )


def describe_runtime() -> Runtime:
    """Collect scale, JAX backend, devices and library versions (see :class:`Runtime`)."""
    import flax
    import jax
    import optax

    devices = tuple(f"{d.platform}:{d.id} ({getattr(d, 'device_kind', d.platform)})" for d in jax.devices())
    return Runtime(
        scale=get_scale(),
        backend=jax.default_backend(),
        devices=devices,
        jax_version=jax.__version__,
        flax_version=flax.__version__,
        optax_version=optax.__version__,
        python_version=platform.python_version(),
        cpu_count=os.cpu_count() or 1,
    )


def setup_notebook(chapter: str) -> Runtime:
    """Print the chapter's scale and device, register them in the course report, return them.

    Call it in the first code cell of every notebook.
    """
    from lmcourse import report

    runtime = describe_runtime()
    print(f"[{chapter}] {runtime}")
    report.record("scale", runtime.scale)
    report.record("device", ", ".join(runtime.devices))
    return runtime
