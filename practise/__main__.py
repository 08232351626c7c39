"""``python -m practise``: the same as the ``practise`` command."""
import sys

from .cli import main

sys.exit(main())
