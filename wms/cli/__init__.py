"""The ``ewms`` command-line tool.

``main.py`` builds the parser from the ``commands_*`` modules listed in ``COMMAND_MODULES``. Each module has
``register(subparsers)``, which adds its sub-commands and sets ``handler`` on each: an ``async`` function taking the
parsed arguments and returning an exit code (see :mod:`wms.cli.exits`).
"""
