import sys

from edgetqs.cli.app import main

sys.exit(main())
