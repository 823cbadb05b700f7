"""Reading and checking weekly datasets, and the simulated fleet that ships as the sample."""

DATE_COLUMN = "date"
"""The weekly dataset's date column (here, not in weekly.py, so that reading its name imports no
pandas: `promote` by hand names it and runs in many processes at once)."""
