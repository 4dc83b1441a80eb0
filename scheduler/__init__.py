"""The cluster's scheduler: its state in SQLite, the queue, gang placement, node lifecycle and drain, and the
daemon that speaks to agents and clients over ZeroMQ.

The core (resources, placement, queue, nodes, drain, store, state) takes data and returns data; only
`daemon` owns sockets. Nothing here imports `engine` or `agent`: the scheduler and the agents share only the
`jobs` messages.
"""
