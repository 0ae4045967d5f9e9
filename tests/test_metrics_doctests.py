"""The shape examples in the docstrings of the loss and metric modules stay true."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["deepasa.losses.pit", "deepasa.metrics.seld_frame", "deepasa.metrics.seld_dcase",
                                    "deepasa.evaluation.scoring", "deepasa.metrics.trajectory",
                                    "deepasa.separation.spatial"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
