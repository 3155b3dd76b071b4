"""`python -m kuavo_train ...` is the same as `kuavo-train ...`."""

import sys

from kuavo_train.cli import main

sys.exit(main())
