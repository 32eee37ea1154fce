"""The userspace driver: the portable forwarder, and the reference a faster one is checked against.

* :mod:`.pipeline` - the pure packet pipeline (:class:`~.pipeline.Forwarder`).
* :mod:`.packets` - header parsing and building.
* :mod:`.fib` - the per-VRF longest-prefix-match tables and ECMP choice.
* :mod:`.process` - the driver itself: AF_PACKET / raw IP sockets around the pipeline.
* :mod:`.ring` - the PACKET_MMAP receive ring of a port socket.
* :mod:`.offload` - turning a VM interface's offloads off (AF_PACKET needs finished frames).
"""
