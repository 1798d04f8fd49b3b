import sys

from isdc.cli import main

sys.exit(main())
