"""Shipped with the Summarize node as a dependency: the script imports it from its working dir."""

import csv
import statistics


def summarize(path: str, column: str) -> dict:
    with open(path, newline="") as handle:
        values = [float(row[column]) for row in csv.DictReader(handle)]
    return {"column": column, "rows": len(values), "mean": statistics.fmean(values)}
