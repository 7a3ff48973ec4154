"""The socket stream of the port adapter against the line-by-line codec path, on both interpreters.

Cases: tests/device_cases/stream_cases.py (a fake socket hands the bytes out in pieces).
"""
import pytest

from tests.device_cases.host import HERE, case_names, check_case, check_complete

SCRIPT = HERE / "stream_cases.py"


@pytest.mark.parametrize("case", case_names(SCRIPT))
def test_stream(interp, case, tmp_path_factory):
    check_case(SCRIPT, interp, case, tmp_path_factory)


def test_stream_script_complete(interp, tmp_path_factory):
    check_complete(SCRIPT, interp, tmp_path_factory)
