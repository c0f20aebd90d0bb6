"""`make run` names the ports something else already holds instead of failing inside one service."""

import socket

from llmsuite_testkit.processes import busy_ports, free_port


def test_busy_ports_names_only_the_ports_in_use():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        free = free_port()
        assert busy_ports({"retrieval": taken, "gateway": free}) == [f"retrieval ({taken})"]
