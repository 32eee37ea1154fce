"""vpe: a virtual Provider Edge for BGP/MPLS IP VPNs on end-systems."""

__version__ = "0.1.0"
