"""Distillation methods beyond Hinton's KD, one per module, as pure functions of tensors (and
small explicit ``nn.Module`` s for what a method learns or remembers).

- :mod:`~kdspec.runtime.kd_methods.logit_standardization`: z-scored logits (Sun et al. 2024);
- :mod:`~kdspec.runtime.kd_methods.dkd`: decoupled KD, TCKD and NCKD (Zhao et al. 2022);
- :mod:`~kdspec.runtime.kd_methods.dist`: Pearson relations between and within classes
  (Huang et al. 2022);
- :mod:`~kdspec.runtime.kd_methods.fitnet`: hints through a learned regressor (Romero et al.
  2015);
- :mod:`~kdspec.runtime.kd_methods.attention_transfer`: attention maps of each stage
  (Zagoruyko & Komodakis 2017);
- :mod:`~kdspec.runtime.kd_methods.crd` and :mod:`~kdspec.runtime.kd_methods.crd_negatives`:
  contrastive representation distillation with a memory bank (Tian et al. 2020);
- :mod:`~kdspec.runtime.kd_methods.label_smoothing`: the label-smoothing control arm.

Like :mod:`kdspec.runtime.losses`, every loss computes half-precision inputs in float32 and
leaves float32 and float64 as they are. What each method needs from a plan is in
:mod:`kdspec.distillation_methods`.
"""
