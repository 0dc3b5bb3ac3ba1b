"""The analysis stage: MLflow runs of a study -> statistics -> report files and figures.

Reading: ``store_reader`` (MLflow query and artifact download) -> ``records`` (typed records).
Statistics: ``accuracy``, ``significance`` (Welch class tests, #SC/#TC), ``disagreement``,
``fairness`` (DPD/EOD, one-vs-rest for multiclass), gathered in ``study_analysis``.
Output: ``figures`` (the poster's four), ``csv_tables``, ``report_findings`` (main-finding
sentences), ``report_document`` -> ``report_markdown`` / ``report_html``; ``report_builder``
orchestrates and logs the report back to MLflow. Imports ``plan`` and MLflow, never ``runtime``.
"""
