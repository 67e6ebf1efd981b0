"""Adjutant's cogs, installed as ``adjutant.cogs`` (see pyproject's package-dir). Each is an extension."""
