import sys

from signalguard.cli import main

sys.exit(main())
