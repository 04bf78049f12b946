"""``python scripts/compare.py ...`` is ``rl-coordconv compare ...`` (rl_coordconv/commands/compare.py)."""

import sys

from rl_coordconv.commands.compare import main

if __name__ == "__main__":
    sys.exit(main())
