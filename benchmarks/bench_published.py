"""Every row of ../shared/validation/published.csv: predicted, published, |r - 1|; median and p90 per kind.

    .venv/bin/python benchmarks/bench_published.py [path/to/published.csv]
"""

import sys
import time
from pathlib import Path

from chipfit.validate_published import format_table, validate_published

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "validation" / "published.csv"

if __name__ == "__main__":
    t0 = time.perf_counter()
    result = validate_published(sys.argv[1] if len(sys.argv) > 1 else DEFAULT)
    print(format_table(result))
    print(f"\n{len(result.rows)} rows in {time.perf_counter() - t0:.1f} s")
    for r in result.rows:
        if r.how:
            print(f"  {r.id}: {r.how}")
