"""``python -m normstat``: the same CLI as the ``normstat`` command."""

from normstat.cli import run

run()
