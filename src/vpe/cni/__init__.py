"""vpe-cni: a CNI 1.0 plugin attaching containers to VPN instances of the local vpe agent (docs/cni.md)."""
