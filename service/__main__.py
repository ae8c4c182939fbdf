"""`python -m service` is the `hwgrade` command."""

import sys

from service.cli import main

sys.exit(main())
