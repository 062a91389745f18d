import os
import sys

import pytest
import torch
from hypothesis import settings

sys.path.insert(0, os.path.dirname(__file__))
torch.set_num_threads(min(2, os.cpu_count() or 1))
# CI must be reproducible: the same random networks on every run there
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def effnet():
    from pathattr.zoo import efficientnet_lite0
    return efficientnet_lite0()


@pytest.fixture(scope="session")
def photos2():
    from pathattr.zoo import photo_batch
    return photo_batch(["chelsea", "coffee"])
