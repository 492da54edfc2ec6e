"""Package marker: makes setuptools ship the files of this folder (pyproject package-data globs)."""
