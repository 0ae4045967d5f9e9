"""The examples in the docstrings of the inference modules stay true."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["deepasa.inference.stitching", "deepasa.inference.result"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
