"""``python -m kuavo_train.demo.synthetic``: write a synthetic Kuavo task (see :func:`writer.main`)."""

import sys

from kuavo_train.demo.synthetic.writer import main

sys.exit(main())
