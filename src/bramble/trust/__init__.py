"""Trust: boards enroll with a join token and get their own credentials; the master decides.

`policy` decides (pure), `leases` reads the DHCP server's leases, `store` keeps every node's
credentials in SQLite, `service` and `api` serve enrollment on the master, `node` is the
board's side.
"""
