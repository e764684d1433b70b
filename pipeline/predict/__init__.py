"""Scoring: the champion loaded, films scored in one pass or in shards, from files or a PACS,
and the inference and rejected logs every prediction is written to."""
