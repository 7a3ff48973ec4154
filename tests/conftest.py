import pytest

from host_sim.runner import Device, available_interpreters
from host_sim.world import World

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


@pytest.fixture(scope="module")
def _module_world():
    with World() as w:
        yield w


@pytest.fixture
def world(_module_world):
    """The mocked VM Maker world (started once per test module), healthy, records empty."""
    _module_world.reset()
    _module_world.clear_records()
    yield _module_world
    _module_world.reset()
