"""Rewrite the report blocks of docs/results.md (and their figures) from the records in results/.

    python scripts/refresh_results.py [docs/results.md]

Run it after copying new records (``rl-coordconv records``); tests/test_results_doc.py fails while
the page quotes numbers that its records no longer give. Each block is the report that
``rl-coordconv compare`` computes (``rl_coordconv.analysis.build_report``, seed 0).
"""

import sys
from pathlib import Path

from rl_coordconv.analysis.document import refresh

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    page = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "results.md"
    print(f"{page}: {refresh(page, ROOT)} report blocks rewritten from their records")
