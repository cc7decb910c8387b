"""The executor slice: notebook jobs run by papermill on a Ray cluster, with schedules."""
