"""``python scripts/evaluate.py ...`` is ``rl-coordconv evaluate ...`` (rl_coordconv/commands/evaluate.py)."""

import sys

from rl_coordconv.commands.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
