"""``python scripts/sweep.py ...`` is ``rl-coordconv sweep ...`` (rl_coordconv/commands/sweep.py)."""

import sys

from rl_coordconv.commands.sweep import main

if __name__ == "__main__":
    sys.exit(main())
