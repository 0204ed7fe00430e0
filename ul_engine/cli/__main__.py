import sys

from ul_engine.cli.main import main

sys.exit(main())
