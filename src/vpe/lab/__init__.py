"""Lab tooling: network-namespace topologies described by a short YAML file.

``vpe lab up FILE`` turns a :mod:`~vpe.lab.topology` into namespaces, a
bridge, veth pairs and running processes (:mod:`~vpe.lab.build`); the demo
and the end-to-end tests stand on it. Nothing here touches the root
namespace: every link is created inside a namespace the lab owns, so
deleting those namespaces removes everything.
"""
