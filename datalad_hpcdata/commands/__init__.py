"""The DataLad commands: Interface classes only (parameters, docs, examples,
result rendering); the work is done by :mod:`datalad_hpcdata.jobs`."""
