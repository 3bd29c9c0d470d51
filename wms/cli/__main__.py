"""``python -m wms.cli``: the ``ewms`` command."""

import sys

from wms.cli.main import main

sys.exit(main())
