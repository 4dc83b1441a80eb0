"""`python -m rade.devcluster enter ...`: the exec wrapper that puts an agent into its node's test host."""

from __future__ import annotations

import sys

from rade.devcluster.network import main

sys.exit(main(sys.argv[1:]))
