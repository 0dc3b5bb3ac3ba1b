"""What kdspec knows before anything runs, free of torch: the datasets and architectures by
name (built-in facts, plugins, ``torchvision:``/``timm:``/``hf:`` names), their sizes, classes,
attributes and feature points, and the checks a plan must pass against them. The compiler, the
runtime and the analysis all read it; it imports nothing of theirs (tests/test_layers.py)."""
