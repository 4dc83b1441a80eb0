"""One machine's containers: their records on disk, the supervisor that watches each running one, logs,
attach, diff/commit and volumes. The launch itself (namespaces, mounts, cgroups) is `engine.launch`.

On disk, ROOT/containers/<64-hex id>/ holds `state.json` (store), `ctr.log` (logs), `attach.sock` and
`supervisor.lock` (supervisor), `supervisor.log`, and the overlay's `upper/`, `work/` and `rootfs/`.
Named volumes live in ROOT/volumes/NAME/_data (volumes). Callers use `lifecycle` (or `engine.api`).
"""
