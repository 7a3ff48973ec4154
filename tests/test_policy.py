"""The sans-IO failover policy as table tests (fake clock, fixed random source), run on the
device interpreters (cpython and micropython). Cases: tests/device_cases/policy_cases.py."""
import pytest

from tests.device_cases.host import HERE, case_names, check_case, check_complete

SCRIPT = HERE / "policy_cases.py"


@pytest.mark.parametrize("case", case_names(SCRIPT))
def test_policy(interp, case, tmp_path_factory):
    check_case(SCRIPT, interp, case, tmp_path_factory)


def test_policy_script_complete(interp, tmp_path_factory):
    check_complete(SCRIPT, interp, tmp_path_factory)
