import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from stackctl.paths import NodePaths  # noqa: E402

sys.path.insert(0, str(Path(__file__).parents[2]))
from kernel_cleanup import unmount_under  # noqa: E402  (tests/kernel_cleanup.py)


@pytest.fixture
def paths(tmp_path) -> NodePaths:
    """Private dirs; as root the controller mounts a tmpfs for secrets below ``run``, so
    whatever got mounted under the test's directory is unmounted afterwards."""
    (tmp_path / "state").mkdir()
    (tmp_path / "run").mkdir()
    yield NodePaths(str(tmp_path / "state"), str(tmp_path / "run"), "stackctl-test")
    unmount_under(str(tmp_path))
