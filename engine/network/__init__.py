"""Container and test-host networking: namespaces, bridges and veth pairs (rtnetlink via pyroute2), an
address pool, /etc/hosts text, and the userspace proxy that publishes container ports on the host.

Modules: `netns` (namespace files, running code inside one), `links` (bridges, veth pairs), `ipam`
(leases), `container` (a container's network, set up and torn down), `testhost` (namespaced hosts for
a dev cluster), `ports` (`-p`/`-P` values), `proxy` (the port proxy), `hosts` (/etc/hosts text).
Nothing here adds a route out of its subnets, a NAT or a firewall rule.
"""
