"""Conformance tests: external test vectors decoded with vpe's codec."""
