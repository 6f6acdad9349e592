import sys

from phoenix_hook.cli.main import main

sys.exit(main())
