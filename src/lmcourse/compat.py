"""The one place for JAX/Flax calls whose API changed between the versions the course supports.

Used in chapters: 03, 07, 08, 10, 11, 12; imported by ``lmcourse.adversarial``,
``lmcourse.generation``, ``lmcourse.models.detector``, ``lmcourse.models.gpt``,
``lmcourse.models.seq2seq``, ``lmcourse.multitask``, ``lmcourse.recsys``, ``lmcourse.sharding``,
``lmcourse.training``.

Tested: Flax 0.12.8 with JAX 0.10.2 (the floors in requirements.txt); the shims below also
keep the older Flax optimizer API working. Flax 0.11 changed ``nnx.Optimizer``: it
now takes ``wrt=`` and its ``update`` takes the model as well as the gradients. Everything else
in the course calls the two functions below instead of the constructor and method directly.
"""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported lazily below: `import lmcourse` must not start JAX's backend
    import optax
    from flax import nnx


@functools.cache
def _optimizer_api() -> tuple[bool, bool]:
    """(constructor takes ``wrt``, ``update`` takes the model) for the installed Flax."""
    from flax import nnx

    takes_wrt = "wrt" in inspect.signature(nnx.Optimizer.__init__).parameters
    update_args = [p for p in inspect.signature(nnx.Optimizer.update).parameters
                   if p not in ("self", "kwargs")]
    return takes_wrt, len(update_args) >= 2


def make_optimizer(model: nnx.Module, tx: optax.GradientTransformation) -> nnx.Optimizer:
    """``nnx.Optimizer`` over the model's ``nnx.Param`` variables, on any supported Flax."""
    from flax import nnx

    if _optimizer_api()[0]:
        return nnx.Optimizer(model, tx, wrt=nnx.Param)
    return nnx.Optimizer(model, tx)  # Flax < 0.11


def apply_gradients(optimizer: nnx.Optimizer, model: nnx.Module, grads) -> None:
    """Apply one optimizer step in place (``optimizer.update``), on any supported Flax."""
    if _optimizer_api()[1]:
        optimizer.update(model, grads)
    else:  # Flax < 0.11
        optimizer.update(grads)


# --- CPU speed flags -------------------------------------------------------------------------
# In jaxlib 0.10 the CPU backend sends convolutions to YNNPACK by default; keeping convolutions
# on XLA's own path (dense layers stay on YNNPACK) trains the chapter-03 CNN about 1.8x faster with
# the same accuracy (losses equal up to float32 rounding; measured in benchmarks/). On jaxlib 0.12
# the flag is accepted but gives no speed-up, and XLA aborts on flags it does not know, so the flag
# is only added for jaxlib versions where it was checked to help.
CPU_XLA_FLAGS = {"0.10": "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"}
XLA_TUNING_ENV = "LMCOURSE_XLA_TUNING"


def cpu_xla_flag(jaxlib_version: str) -> str | None:
    """The CPU speed flag verified for this jaxlib version, or ``None``."""
    return CPU_XLA_FLAGS.get(".".join(jaxlib_version.split(".")[:2]))


def apply_cpu_xla_flags(environ=None) -> str | None:
    """Add the verified CPU flag to ``XLA_FLAGS`` unless ``LMCOURSE_XLA_TUNING=0``.

    Must run before JAX creates its CPU backend (the first computation), which is why
    ``import lmcourse`` calls it. Returns the flag added, or ``None``.
    """
    import os
    from importlib.metadata import PackageNotFoundError, version

    environ = os.environ if environ is None else environ
    if environ.get(XLA_TUNING_ENV, "1") == "0":
        return None
    try:
        flag = cpu_xla_flag(version("jaxlib"))
    except PackageNotFoundError:
        return None
    current = environ.get("XLA_FLAGS", "")
    if flag is None or flag.split("=")[0] in current:
        return None
    environ["XLA_FLAGS"] = f"{current} {flag}".strip()
    return flag


COMPILATION_CACHE_ENV = "LMCOURSE_JAX_CACHE"
COMPILATION_CACHE_FOLDER = "jax-compilation-cache"


def enable_compilation_cache(environ=None) -> str | None:
    """Turn on JAX's persistent compilation cache, so a new process reuses compiled programs.

    Every fresh Python process (a notebook kernel, a test run, a script) otherwise compiles each
    jitted function, and each eager operation (every parameter initialiser), again. With the
    cache, XLA's executables are written to ``<data cache>/jax-compilation-cache`` (the folder
    of :func:`lmcourse.data.fetch.cache_root`, ignored by git) and loaded from there by later
    processes with the same program, JAX version, backend and flags. Measured on 2 CPU cores
    (``benchmarks/results/time_to_accuracy*.txt``): from loaded data to the end of the first
    training step of the chapter-03 CNN (model built, step compiled), 5.1–6.7 s without the
    cache, 1.0–1.2 s with a filled one. Thresholds are 0
    (cache every program, however small or quick to compile), since the many small eager
    programs are what model building waits for. The results are bit-identical: the cache
    stores the compiled program, not its outputs. JAX documentation: "Persistent compilation
    cache" (docs.jax.dev/en/latest/persistent_compilation_cache.html).

    A cache folder the user chose (``JAX_COMPILATION_CACHE_DIR`` or
    ``jax.config.update("jax_compilation_cache_dir", ...)``) is kept. Opt out with
    ``LMCOURSE_JAX_CACHE=0``. ``import lmcourse`` calls this.

    Args:
        environ: the environment to read (``os.environ`` by default).

    Returns:
        the cache folder in use, or ``None`` when opted out.
    """
    import os

    import jax

    environ = os.environ if environ is None else environ
    if environ.get(COMPILATION_CACHE_ENV, "1") == "0":
        return None
    if jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir
    from lmcourse.data.fetch import cache_root

    folder = str(cache_root() / COMPILATION_CACHE_FOLDER)
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


# --- train / eval mode ------------------------------------------------------------------------
# ``Module.eval()`` / ``.train()`` set ``deterministic`` (Dropout) and ``use_running_average``
# (BatchNorm) on every nested module. Code that switches a model to evaluation mode for a while
# must put back the mode it found, which may be a mix (a frozen BatchNorm in a training model).
MODE_ATTRIBUTES = ("deterministic", "use_running_average")


def _iter_modules(model: nnx.Module):
    from flax import nnx

    if hasattr(nnx, "iter_modules"):
        return nnx.iter_modules(model)
    return model.iter_modules()  # Flax < 0.12


def get_modes(model: nnx.Module) -> list[tuple[nnx.Module, dict[str, object]]]:
    """Every nested module's mode attributes (``deterministic``, ``use_running_average``)."""
    found = []
    for _, module in _iter_modules(model):
        attrs = {a: getattr(module, a) for a in MODE_ATTRIBUTES if hasattr(module, a)}
        if attrs:
            found.append((module, attrs))
    return found


def set_modes(modes: list[tuple[nnx.Module, dict[str, object]]]) -> None:
    """Put back the mode attributes recorded by :func:`get_modes`."""
    for module, attrs in modes:
        for name, value in attrs.items():
            setattr(module, name, value)


def backends_started() -> bool:
    """Whether JAX has already created its backends (after which the device count is fixed).

    JAX has no public call for this; the private ``jax._src.xla_bridge.backends_are_initialized``
    (present in JAX 0.4.31 … 0.10.2) is used where it exists. If a future JAX removes it, this
    returns ``False`` and :func:`lmcourse.sharding.use_cpu_devices` still detects a late call by
    comparing ``jax.device_count()`` with the count asked for.
    """
    try:
        from jax._src import xla_bridge
    except ImportError:  # pragma: no cover - depends on the JAX version
        return False
    started = getattr(xla_bridge, "backends_are_initialized", None)
    return bool(started()) if callable(started) else False
