"""A catalog's data at run time, independent of its domain: items, interaction statistics
(popularity, head/tail, co-occurrence) and the assets fetched into the data home."""
