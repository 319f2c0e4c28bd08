"""Training scripts: ``python -m train.stt``, ``python -m train.htnet`` (full precision and QAT)."""
