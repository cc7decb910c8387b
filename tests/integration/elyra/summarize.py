"""The Summarize node: reads the rows load_data.ipynb wrote, writes summary.json for report.ipynb."""

import json
import os

from summary_lib import summarize

summary = summarize("data/rows.csv", os.environ["COLUMN"])
with open("summary.json", "w") as handle:
    json.dump(summary, handle)
print(f"{summary['rows']} rows, mean {summary['column']} {summary['mean']:.3f} ({os.environ['LOG_LEVEL']})")
