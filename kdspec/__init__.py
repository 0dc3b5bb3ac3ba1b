"""kdspec: declarative knowledge-distillation studies, tracked in MLflow, analysed for class bias
and fairness."""

__version__ = "0.1.0"
