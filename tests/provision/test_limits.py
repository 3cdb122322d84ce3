"""What the rendered units promise about limits and users."""

from __future__ import annotations

import re

from bramble.spec import parse_spec

NODE = '[[nodes]]\nname = "node-1"\nmac = "b8:27:eb:00:00:01"\n'


def test_the_master_unit_has_room_for_its_connections() -> None:
    from bramble.provision.render import render

    unit = render(parse_spec(NODE), None)["master/etc/systemd/system/bramble-master.service"]
    match = re.search(r"^LimitNOFILE=(\d+)$", unit, re.MULTILINE)
    assert match is not None and int(match.group(1)) >= 16384
