import sys

from pydarknet_loss.cli import main

sys.exit(main())
