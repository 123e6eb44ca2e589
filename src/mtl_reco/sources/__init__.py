"""Raw-data sources: readers and the simulator (plain pandas/pyarrow, no Kedro).

Pick a source by name with :func:`mtl_reco.sources.registry.read_source`; it
returns the :class:`~mtl_reco.sources.base.RawSchema` (label, sparse, dense,
extra and split columns, funnel, default tasks) and a lazy, re-iterable,
chunked :class:`~mtl_reco.tables.Table` of raw events.

==================  ==========================================================
``simulated``       built-in click -> purchase funnel with Ali-CCP's schema and
                    the true propensities (:mod:`.simulated`)
``census_income``   UCI Census-Income (KDD) raw files (:mod:`.census_income`)
``ali_ccp_raw``     raw Tianchi skeleton + common features (:mod:`.ali_ccp_raw`)
``ali_ccp``         processed 33-column Ali-CCP CSV (``formats/ali_ccp.yml``)
``aliexpress``      processed AliExpress CSV (``formats/aliexpress.yml``)
==================  ==========================================================

Processed CSV formats need no code: each is one YAML description in
:mod:`mtl_reco.sources.formats` (its label, sparse, dense and extra columns,
funnel and default tasks), read by the generic reader of
:mod:`mtl_reco.sources._processed`. Only formats that need code (generation,
joins, parsing) are modules.

Sources never clean data: labels are emitted as found and judged by the
validation stage. Unreadable input (missing or empty file, wrong number of
fields) raises :class:`~mtl_reco.sources.base.SourceError` naming the file.
"""
