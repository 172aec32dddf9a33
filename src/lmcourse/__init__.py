"""lmcourse: the helpers behind the course "How large models work".

Each notebook in ``notebooks/`` teaches one idea in full and imports from here only what
several chapters share: the scale switch and device report (:mod:`lmcourse.config`), the
data layer (:mod:`lmcourse.data`), models (:mod:`lmcourse.models`), the training loop once
it has been taught (:mod:`lmcourse.training`), and the course report (:mod:`lmcourse.report`).

Importing the package adds a verified CPU speed flag to ``XLA_FLAGS`` (see
:func:`lmcourse.compat.apply_cpu_xla_flags`; opt out with ``LMCOURSE_XLA_TUNING=0``), so import
it before running any JAX computation. It also turns on JAX's persistent compilation cache in the
data folder (:func:`lmcourse.compat.enable_compilation_cache`; opt out with ``LMCOURSE_JAX_CACHE=0``),
so a second run of a notebook loads its compiled programs instead of compiling them again.
"""

from lmcourse.compat import apply_cpu_xla_flags, enable_compilation_cache

apply_cpu_xla_flags()
enable_compilation_cache()

__version__ = "0.1.0"
