"""What runs on a workstation and talks to a running master: status, top, the jobs calls."""
