"""httpcodec and retryafter, run on the device interpreters (cpython and micropython).

The cases live in tests/device_cases/codec_cases.py; each script runs once per interpreter.
"""
import pytest

from tests.device_cases.host import HERE, case_names, check_case, check_complete

SCRIPT = HERE / "codec_cases.py"


@pytest.mark.parametrize("case", case_names(SCRIPT))
def test_codec(interp, case, tmp_path_factory):
    check_case(SCRIPT, interp, case, tmp_path_factory)


def test_codec_script_complete(interp, tmp_path_factory):
    check_complete(SCRIPT, interp, tmp_path_factory)
