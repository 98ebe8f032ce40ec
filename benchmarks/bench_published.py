"""Every row of the published-runs files: predicted, published, |r - 1|; median and p90 per kind; how each was laid.

    .venv/bin/python benchmarks/bench_published.py [FILE ...]

Without arguments: ../shared/validation/published.csv, then benchmarks/validation/published_more.csv, each
its own table (benchmarks/results/published.txt and published_more.txt hold the latest output).
"""

import sys
import time
from pathlib import Path

from chipfit.validate_published import format_table, validate_published

HERE = Path(__file__).resolve().parent
# ../shared/validation/published.csv of the checkout: the nearest ancestor that has one (worktrees sit deeper).
SHARED = next((p / "shared" / "validation" / "published.csv" for p in HERE.parents
               if (p / "shared" / "validation" / "published.csv").is_file()), HERE.parents[2] / "shared")
DEFAULT = (SHARED, HERE / "validation" / "published_more.csv")

if __name__ == "__main__":
    for path in sys.argv[1:] or DEFAULT:
        t0 = time.perf_counter()
        result = validate_published(path)
        print(f"== {path}\n{format_table(result)}\n\n{len(result.rows)} rows in {time.perf_counter() - t0:.1f} s")
        for r in result.rows:
            if r.how:
                print(f"  {r.id}: {r.how}")
        print()
