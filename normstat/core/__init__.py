"""The pure numeric core: numpy and the standard library only, no I/O.

Everything here is a value or a function of values, so the local and the distributed engine can
share it and tests can check it without files. The package itself imports nothing, so that
``normstat.core.choices`` (the closed sets of option values) is free for the CLI to read while it
builds ``--help``, without importing numpy. Import the submodules directly.
"""
