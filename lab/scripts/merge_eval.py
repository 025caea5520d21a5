"""Merge the results.json of evaluation shards and print the tables:

    python lab/scripts/merge_eval.py OUT.json SHARD_DIR/results.json [...]
"""

import json
import sys
from pathlib import Path

from animus3d_lab.commands.evaluate import merge_reports, print_report

if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    reports = [json.loads(Path(p).read_text()) for p in sys.argv[2:] if Path(p).is_file()]
    merged = merge_reports(reports)
    Path(sys.argv[1]).write_text(json.dumps(merged, indent=2) + "\n")
    print_report(merged)
