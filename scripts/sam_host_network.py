"""SAM CLI with `--docker-network host` honoured: run as `python sam_host_network.py ARGS`
in SAM CLI's own environment (scripts/sam does), exactly like `sam ARGS` otherwise.

Since it moved to a docker-py that refuses port bindings on the host network, SAM CLI
creates its Lambda container on Docker's default network when asked for `host` and never
joins it to the host's (aws/aws-sam-cli#4236, #6347; the fix #7278 was not merged). The
function then cannot reach a service on the machine's 127.0.0.1, and on a Docker without a
bridge (ours: every packet stays on loopback) SAM CLI cannot even reach the emulator.

This does what the option says, and only for `host`: the container joins the host's network,
and the Runtime Interface Emulator listens on the loopback port SAM CLI already chose for it
(instead of 8080 for every container), with the Runtime API on a free loopback port (instead
of 9001), so containers side by side do not collide. Nothing else in SAM CLI changes.
"""

from __future__ import annotations

import contextvars
import socket
import sys
from typing import Any

from docker.models.containers import ContainerCollection
from samcli.cli.main import cli
from samcli.local.docker.container import Container

_EMULATOR_PORT: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "emulator_port", default=None
)
_sam_create = Container.create
_docker_create = ContainerCollection.create


def _free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _create(self: Container, context: Any) -> Any:
    if self.network_id != "host":
        return _sam_create(self, context)
    token = _EMULATOR_PORT.set(self.rapid_port_host)
    try:
        return _sam_create(self, context)
    finally:
        _EMULATOR_PORT.reset(token)


def _create_on_host_network(
    self: ContainerCollection, image: Any, command: Any = None, **kwargs: Any
) -> Any:
    port = _EMULATOR_PORT.get()
    if port is not None:
        kwargs.pop("ports", None)  # meaningless on the host's network
        kwargs["network_mode"] = "host"
        kwargs["entrypoint"] = [
            *kwargs["entrypoint"],
            f"--runtime-interface-emulator-address=127.0.0.1:{port}",
            f"--runtime-api-address=127.0.0.1:{_free_loopback_port()}",
        ]
    return _docker_create(self, image, command, **kwargs)


Container.create = _create
ContainerCollection.create = _create_on_host_network

if __name__ == "__main__":
    sys.argv[0] = "sam"
    sys.exit(cli())
