import sys

from pipelined.cli import main

sys.exit(main())
