"""``python -m normstat``: the same CLI as the ``normstat`` command."""

from normstat.entry import run

run()
