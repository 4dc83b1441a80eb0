"""One machine's containers and images, usable alone (`rade run`) and by the node agent.

Knows nothing of the cluster: imports only `jobs` (units and errors) and pyroute2.
"""
