"""Endpoints, allow-list, credentials, config errors, secrets never shown, and the Client's
redirect/retry/auth logic against an in-process fake transport, on the device interpreters
(cpython and micropython). Cases: tests/device_cases/endpoints_auth_cases.py and
tests/device_cases/client_cases.py."""
import socket

import pytest

from tests.device_cases.host import HERE, case_names, check_case, check_complete

ENDPOINTS = HERE / "endpoints_auth_cases.py"
CLIENT = HERE / "client_cases.py"


def _closed_port():
    # A port nobody listens on: bound once, then released.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


ENV = {"VMM_CLOSED_PORT": str(_closed_port())}


@pytest.mark.parametrize("case", case_names(ENDPOINTS))
def test_endpoints_auth(interp, case, tmp_path_factory):
    check_case(ENDPOINTS, interp, case, tmp_path_factory, env=ENV)


def test_endpoints_auth_script_complete(interp, tmp_path_factory):
    check_complete(ENDPOINTS, interp, tmp_path_factory, env=ENV)


@pytest.mark.parametrize("case", case_names(CLIENT))
def test_client(interp, case, tmp_path_factory):
    check_case(CLIENT, interp, case, tmp_path_factory)


def test_client_script_complete(interp, tmp_path_factory):
    check_complete(CLIENT, interp, tmp_path_factory)
