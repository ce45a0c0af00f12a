import sys

from synapse_workers.cli.main import main

sys.exit(main())
