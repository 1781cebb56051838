"""``python -m handvox.cli``: what torchrun starts (``torchrun ... -m handvox.cli train ...``)."""

import sys

from handvox.cli.main import main

sys.exit(main())
