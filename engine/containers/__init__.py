"""One machine's containers: their records on disk, the supervisor that watches each running one, logs,
attach, diff/commit and volumes. The launch itself (namespaces, mounts, cgroups) is `engine.launch`."""
