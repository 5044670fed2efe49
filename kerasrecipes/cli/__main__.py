"""`python -m kerasrecipes.cli ...`: the `kerasrecipes` command."""

import sys

from kerasrecipes.cli import main

sys.exit(main())
