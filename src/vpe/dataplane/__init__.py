"""vpe's forwarding plane: what every driver shares, and the drivers.

* :mod:`.driver` - the values a control plane programs (ports, routes, labels...)
  and :class:`~.driver.Driver`, the protocol every driver implements.
* :mod:`.errors` - typed refusals, the same on both ends of the channel.
* :mod:`.channel` - the FIB channel protocol and :class:`~.channel.FibClient`.
* :mod:`.server` - the channel served from a forwarder process, for any driver.
* :mod:`.registry` - drivers by name ("none", "userspace", ...), imported lazily.
* :mod:`.process` - ``python -m vpe.dataplane.process --driver NAME``.
* :mod:`.userspace` - the userspace driver (AF_PACKET ports, the Python pipeline).
"""
