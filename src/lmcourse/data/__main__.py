"""``python -m lmcourse.data``: see :mod:`lmcourse.data.cli`."""

import sys

from lmcourse.data.cli import main

if __name__ == "__main__":
    sys.exit(main())
