import sys

from cmdc_nb.cli import main

sys.exit(main())
