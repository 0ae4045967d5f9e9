"""Packaging beyond pyproject.toml: the shipped models and the configs travel in the wheel as package data.

``checkpoints/`` and ``configs/`` stay where a developer expects them (the repository's root); this maps them to
``deepasa/_shipped`` and ``deepasa/_configs`` inside an installed package, so ``deepasa analyze`` finds its models
without a source tree (``deepasa.model.paths``). Only the models a command loads by default travel; training
states, evaluation reports and older exports stay in the repository.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["deepasa", "deepasa.*"])
    + ["deepasa._shipped", "deepasa._configs.model", "deepasa._configs.data"],  # data-only folders
    package_dir={"deepasa._shipped": "checkpoints", "deepasa._configs.model": "configs/model",
                 "deepasa._configs.data": "configs/data"},
    package_data={
        "deepasa": ["scenes/*.csv", "scenes/*.json", "scenes/*.yaml"],
        "deepasa._shipped": ["default.pt", "finder.pt", "object_classes.pt", "README.md"],
        "deepasa._configs.model": ["*.yaml"],
        "deepasa._configs.data": ["*.yaml"],
    },
    exclude_package_data={"deepasa._shipped": ["*_state.pt", "*.ckpt"]},
)
