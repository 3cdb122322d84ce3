"""Serving bramble to the nodes: the master's own wheel and a directory of wheels."""
