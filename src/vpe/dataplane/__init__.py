"""vpe's forwarding plane: driver interface, userspace pipeline, FIB channel, I/O process.

* :mod:`.driver` - the values a control plane programs (ports, routes, labels...).
* :mod:`.pipeline` - the pure packet pipeline (:class:`~.pipeline.Forwarder`).
* :mod:`.channel` - the FIB channel protocol and :class:`~.channel.FibClient`.
* :mod:`.process` - ``python -m vpe.dataplane.process``: sockets around the pipeline.
"""
