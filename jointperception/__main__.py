"""``python -m jointperception`` is the ``jointperception`` command."""
import sys

from jointperception.cli import main

sys.exit(main())
