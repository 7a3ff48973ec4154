import pytest

from host_sim.runner import Device, available_interpreters

INTERPRETERS = ["cpython", "micropython"]


@pytest.fixture(params=INTERPRETERS)
def interp(request):
    """Interpreter name; firmware tests take this so their ids say cpython/micropython."""
    if request.param not in available_interpreters():
        pytest.skip("micropython is not installed for this platform")
    return request.param


@pytest.fixture
def device(interp, tmp_path):
    """A simulated board (flash dir = tmp_path) running the given interpreter."""
    with Device(interp, flash_dir=tmp_path) as d:
        yield d
