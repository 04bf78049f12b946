"""``python scripts/supervised.py ...`` is ``rl-coordconv supervised ...`` (rl_coordconv/commands/supervised.py)."""

import sys

from rl_coordconv.commands.supervised import main

if __name__ == "__main__":
    sys.exit(main())
