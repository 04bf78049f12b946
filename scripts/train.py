"""``python scripts/train.py ...`` is ``rl-coordconv train ...`` (rl_coordconv/commands/train.py)."""

import sys

from rl_coordconv.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
