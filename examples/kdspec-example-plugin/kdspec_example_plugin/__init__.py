"""An example kdspec plugin: the ``stripes`` dataset and the ``stripe_cnn`` / ``stripe_mlp``
architectures.

This module is what the entry points name. It only describes: it imports neither torch nor the
model and data modules, so ``kdspec check`` and ``kdspec list`` stay fast; kdspec imports
``models`` or ``data`` (by the paths below) only when a run trains.
"""

from __future__ import annotations

from kdspec.plugin import ArchFacts, ArchitectureEntry, DatasetEntry, DatasetFacts

#: Stripe orientations: the classes.
ORIENTATIONS = ("horizontal", "vertical", "diagonal", "antidiagonal")
#: Image side in pixels.
SIDE = 16


def architectures() -> list[ArchitectureEntry]:
    """The plugin's models: a small CNN (teacher) and an MLP (student)."""
    return [
        ArchitectureEntry(
            ArchFacts("stripe_cnn", "example", params_millions=0.024, forward_mflops=5.9,
                      ref_size=SIDE, min_size=8),
            build="kdspec_example_plugin.models:build_stripe_cnn"),
        ArchitectureEntry(
            ArchFacts("stripe_mlp", "example", params_millions=0.025, forward_mflops=0.05,
                      ref_size=SIDE, min_size=4),
            build="kdspec_example_plugin.models:build_stripe_mlp"),
    ]


def datasets() -> list[DatasetEntry]:
    """The plugin's dataset: noisy oriented stripes, tinted red or blue (the sensitive
    attribute ``tint``), generated in memory from the study's seed-free generator."""
    return [
        DatasetEntry(
            DatasetFacts(
                "stripes", channels=3, image_size=SIDE, class_names=ORIENTATIONS,
                train_size=None, test_size=None, default_augment="none",
                attributes=("tint",), default_generated_sizes=(2_000, 800),
                how_to_get="generated in memory by kdspec-example-plugin (nothing to download)",
                mean=(0.45, 0.3, 0.45), std=(0.3, 0.25, 0.3)),
            read="kdspec_example_plugin.data:read_stripes"),
    ]
