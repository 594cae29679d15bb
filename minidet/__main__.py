"""``python -m minidet`` = the ``minidet`` command."""
import sys

from minidet.cli import main

sys.exit(main())
