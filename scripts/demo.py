"""``python scripts/demo.py ...`` is ``rl-coordconv demo ...`` (rl_coordconv/commands/demo.py)."""

import sys

from rl_coordconv.commands.demo import main

if __name__ == "__main__":
    sys.exit(main())
