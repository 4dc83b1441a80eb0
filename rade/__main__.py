"""`python -m rade` runs the command, as the `rade` console script does."""

from rade.cli import main

raise SystemExit(main())
