"""Rewrite the report blocks of docs/results.md (and their figures) from the records in results/.

    python scripts/refresh_results.py [docs/results.md]

Run it after copying new records (``rl-coordconv records``); tests/test_results_doc.py fails while
the page quotes numbers that its records no longer give.
"""

import sys
from pathlib import Path

from rl_coordconv.analysis.document import refresh
from rl_coordconv.envs import GAMES

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    page = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "results.md"
    references = {name: (game.random_score, game.human_score) for name, game in GAMES.items()}
    print(f"{page}: {refresh(page, ROOT, references)} report blocks rewritten from their records")
