import sys

from loadtest.stack.cli import main

sys.exit(main())
