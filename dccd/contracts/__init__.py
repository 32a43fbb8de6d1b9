"""Data contracts: vectorised checks of what the lake holds, per written batch and on demand.

- :mod:`~dccd.contracts.rules`: thresholds from the ``contracts:`` config section and the exchange facts;
- the per-batch contracts run inside the writer's quality gate (:mod:`dccd.storage.quality`), rows that
  break a row-level one are quarantined;
- :mod:`~dccd.contracts.check`: ``dccd check`` / ``GET /api/v1/quality`` over stored data, one report per
  dataset and day (:mod:`~dccd.contracts.report`), each contract in DuckDB SQL or pyarrow.compute
  (:mod:`~dccd.contracts.stored`, :mod:`~dccd.contracts.across`).
"""
