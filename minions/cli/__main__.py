import sys

from minions.cli import main

sys.exit(main())
