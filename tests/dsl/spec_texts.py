"""Small spec texts shared by the DSL tests (written once, varied with str.replace)."""

from __future__ import annotations

RECIPE = """
recipe base {
  epochs = 3
  batch_size = 32
  lr = 0.1
  schedule multistep { milestones = [1, 2]  gamma = 0.5 }
}
"""

CIFAR_STUDY = RECIPE + """
study small {
  dataset cifar10 { train_subset = 500  test_subset = 100 }
  teacher resnet56 { recipe = base }
  student resnet20 { recipe = base  epochs = 2  schedule = cosine }
  distill {
    temperatures = [1..3, 8]
    loss = 0.25 * hard + 0.75 * soft
  }
  seeds = 2
}
"""

TRIFEATURE_STUDY = RECIPE + """
study fair {
  dataset trifeature { image_size = 32  target = shape  generated_train = 400  generated_test = 100 }
  teacher resnet20 { recipe = base }
  student lenet5 { recipe = base }
  distill {
    temperatures = [2, 4]
    loss = 0.5 * hard + 0.5 * soft
  }
  seeds = [3, 7]
  fairness {
    sensitive = [color, texture]
    multiclass = one_vs_rest
    aggregate = mean
  }
}
"""
