"""`python -m ai_api`, the same as the `ai-api` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
