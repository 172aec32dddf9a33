"""Models shared by several chapters (every Flax model of the course lives in this package).

Used in chapters: none directly.

``count_params`` (in :mod:`lmcourse.models.common`) counts the parameters of any of them.
"""

from lmcourse.models.cnn import CNN, max_pool_2x2
from lmcourse.models.common import count_params
from lmcourse.models.gpt import GPT, GPTConfig, KVCache
from lmcourse.models.mlp import MLP

__all__ = ["CNN", "GPT", "MLP", "GPTConfig", "KVCache", "count_params", "max_pool_2x2"]
