import sys

from ggstack.cli import main

sys.exit(main())
