"""The daemon's worker processes: ingress, inference and egress."""
