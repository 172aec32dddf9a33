"""The scale switch and the device report that every notebook prints at its top.

Used in chapters: 00, 01, 02, 03, 04, 05, 06, 07, 08, 09, 10, 11, 12.

One environment variable, ``LMCOURSE_SCALE``, chooses how much work each notebook does:

* ``quick``: sized for a 2-core CPU and CI (what a workshop laptop uses; the README lists each
  chapter's measured run time, generated from ``results/*.quick.json``);
* ``full``: the sizes that reproduce the published results each chapter compares with (meant
  for a GPU; see ``docs/DESIGN.md``);
* ``auto`` (the default, also when the variable is unset): ``full`` when JAX sees a GPU or TPU,
  ``quick`` otherwise.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

Scale = Literal["quick", "full"]
SCALE_ENV = "LMCOURSE_SCALE"
_VALID = ("quick", "full", "auto")
RESULTS_DIR = Path(__file__).resolve().parents[2] / "results"
#: Rough full/quick run-time ratio, used only where no ``results/*.full.json`` was recorded:
#: chapter 03's measured ratio on a 2-core CPU (1,471.6 s / 237.9 s ≈ 6.2), rounded.
FULL_OVER_QUICK_ESTIMATE = 6.0
_T = TypeVar("_T")


class FullScaleOnCpuWarning(UserWarning):
    """``LMCOURSE_SCALE=full`` was asked for on a machine where JAX sees no GPU or TPU."""


def _gpu_requested(env: dict[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    wanted = env.get("JAX_PLATFORMS", "").lower()
    return any(p in wanted for p in ("cuda", "gpu", "rocm"))


def _cuda_plugin() -> str | None:
    """The installed JAX CUDA plugin distribution (e.g. ``jax-cuda12-plugin 0.10.2``), or None."""
    for name in ("jax-cuda12-plugin", "jax-cuda13-plugin", "jax-cuda11-plugin"):
        try:
            return f"{name} {importlib.metadata.version(name)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def jax_call(fn: Callable[[], _T]) -> _T:
    """Call a JAX function that starts its backend, with a course message when a GPU was asked for
    (``JAX_PLATFORMS=cuda``) and cannot be started (JAX itself raises a bare error).

    Raises:
        RuntimeError: the GPU backend failed to start; says how to install ``requirements-gpu.txt``.
    """
    try:
        return fn()
    except Exception as exc:
        if not _gpu_requested():
            raise
        plugin = _cuda_plugin()
        have = (f"{plugin} is installed, so check the NVIDIA driver (`nvidia-smi`)" if plugin else
                "this environment's jaxlib has no CUDA support (no jax-cuda plugin is installed)")
        raise RuntimeError(
            f"JAX_PLATFORMS={os.environ.get('JAX_PLATFORMS')!r} asks for a GPU, but JAX could not "
            f"start it: {have}. To use an NVIDIA GPU: `pip install -r requirements-gpu.txt` (CUDA 12, "
            f"needs an NVIDIA driver), then restart the kernel. To run on the CPU instead: "
            f"`unset JAX_PLATFORMS` (or `export JAX_PLATFORMS=cpu`). JAX said: "
            f"{type(exc).__name__}: {exc}") from exc


def accelerator_platform() -> str:
    """Return the platform of JAX's default backend: ``"cpu"``, ``"gpu"`` or ``"tpu"``.

    Raises:
        RuntimeError: a GPU was asked for and cannot be started (see :func:`jax_call`).
    """
    import jax

    return jax_call(jax.default_backend)


def expected_full_minutes(chapter: str, results_dir: Path | None = None) -> tuple[float, str] | None:
    """Expected run time of ``chapter`` at full scale, in minutes, and where the figure comes from.

    Args:
        chapter: the notebook's number first, as given to :func:`setup_notebook` (``"03 A CNN"``).
        results_dir: folder of the results logs (default ``results/`` of the repository).

    Returns:
        ``(minutes, basis)``: from ``results/NN_*.full.json`` (measured, with its device) when
        present; else an *estimate*, :data:`FULL_OVER_QUICK_ESTIMATE` times the recorded quick run;
        ``None`` when neither log exists.
    """
    folder = results_dir or RESULTS_DIR
    number = chapter.split()[0] if chapter.split() else chapter
    for scale in ("full", "quick"):
        for path in sorted(folder.glob(f"{number}_*.{scale}.json")):
            try:
                log = json.loads(path.read_text())
                seconds = float(log["seconds"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if scale == "full":
                return seconds / 60, (f"measured: {path.name}, on {log.get('device', '?')}, "
                                      f"{log.get('machine', '?')}")
            return (seconds * FULL_OVER_QUICK_ESTIMATE / 60,
                    f"an estimate: {FULL_OVER_QUICK_ESTIMATE:g} × the quick run of {path.name}")
    return None


def warn_full_scale_on_cpu(chapter: str, runtime: Runtime, results_dir: Path | None = None) -> bool:
    """Warn once, visibly, when full scale runs without a GPU/TPU; return whether it warned."""
    if runtime.scale != "full" or runtime.backend != "cpu":
        return False
    expected = expected_full_minutes(chapter, results_dir)
    when = (f"expect about {expected[0]:.0f} min ({expected[1]})" if expected
            else "no run time is recorded for this chapter; expect a long run")
    warnings.warn(
        f"[{chapter}] {SCALE_ENV}=full on a CPU ({runtime.cpu_count} cores, no GPU or TPU): {when}. "
        f"For a quick run: `export {SCALE_ENV}=quick` (or `auto`) and restart the kernel.",
        FullScaleOnCpuWarning, stacklevel=3)
    return True


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
    """Collect scale, JAX backend, devices and library versions (see :class:`Runtime`).

    Raises:
        RuntimeError: ``JAX_PLATFORMS`` asks for a GPU that cannot be started (how to install it).
        ValueError: ``LMCOURSE_SCALE`` is not quick, full or auto.
    """
    import flax
    import jax
    import optax

    devices = tuple(f"{d.platform}:{d.id} ({getattr(d, 'device_kind', d.platform)})"
                    for d in jax_call(jax.devices))
    return Runtime(
        scale=get_scale(),
        backend=jax_call(jax.default_backend),
        devices=devices,
        jax_version=jax.__version__,
        flax_version=flax.__version__,
        optax_version=optax.__version__,
        python_version=platform.python_version(),
        cpu_count=os.cpu_count() or 1,
    )


def setup_notebook(chapter: str, needs: Sequence[str] = ()) -> Runtime:
    """Print the chapter's scale and device, register them in the course report, return them.

    Call it in the first code cell of every notebook. Full scale on a CPU gives one
    :class:`FullScaleOnCpuWarning` with the expected run time. It also applies the course's
    colour-blind-safe plot style and, inside IPython/Jupyter, checks every cell's figures after
    the cell runs, printing ``FIGURE CHECK: …`` lines for missing labels, titles or legends
    (see :mod:`lmcourse.plotting`).

    Args:
        chapter: the notebook's number and title, e.g. ``"03 A CNN in Flax with jit"``.
        needs: names of the datasets the chapter uses (see :mod:`lmcourse.data.catalog`); when
            given, they are made available (or one clear error is raised) before anything runs.

    Raises:
        RuntimeError: a GPU was asked for and cannot be started (see :func:`jax_call`).
        lmcourse.data.fetch.DatasetUnavailableError: a needed dataset cannot be had.
    """
    from lmcourse import plotting, report

    if isinstance(needs, str):
        raise ValueError(f"needs must be a sequence of dataset names, e.g. needs=[{needs!r}], "
                         f"not the string {needs!r}")
    runtime = describe_runtime()
    print(f"[{chapter}] {runtime}")
    report.record("scale", runtime.scale)
    report.record("device", ", ".join(runtime.devices))
    warn_full_scale_on_cpu(chapter, runtime)
    plotting.register_figure_hook()
    if needs:
        from lmcourse.data.catalog import require

        require(list(needs))
    return runtime
