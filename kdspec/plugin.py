"""What a kdspec plugin package imports: everything it needs to register architectures and
datasets, from modules that load without torch (so ``kdspec check`` stays fast).

A plugin declares, in its ``pyproject.toml``::

    [project.entry-points."kdspec.architectures"]
    my_plugin = "my_plugin:architectures"      # a list of ArchitectureEntry, or a function
    [project.entry-points."kdspec.datasets"]
    my_plugin = "my_plugin:datasets"           # returning one

and gives, for each architecture, its :class:`ArchFacts` and the path of a builder
``build(*, in_channels, image_size, num_classes) -> torch.nn.Module``; for each dataset, its
:class:`DatasetFacts` and the path of a reader ``read(spec, cache_dir) -> ArraySplits``. See
``examples/kdspec-example-plugin`` and docs/plugins.md.
"""

from __future__ import annotations

from kdspec.catalogue.dataset_arrays import ArraySplits
from kdspec.catalogue.facts import ArchFacts, DatasetFacts
from kdspec.catalogue.registry import (
    ARCHITECTURE_GROUP,
    DATASET_GROUP,
    ArchitectureEntry,
    DatasetEntry,
)

__all__ = [
    "ARCHITECTURE_GROUP",
    "DATASET_GROUP",
    "ArchFacts",
    "ArchitectureEntry",
    "ArraySplits",
    "DatasetEntry",
    "DatasetFacts",
]
