"""Models shared by several chapters."""

from lmcourse.models.cnn import CNN, max_pool_2x2

__all__ = ["CNN", "max_pool_2x2"]
