"""git-annex external special remote ``hpcdata``.

One executable (``git-annex-remote-hpcdata``) that

* resolves persistent identifiers and object-store URLs (``zenodo://``,
  ``doi:``, ``vdi://``, ``s3://``, ``irods://`` and Zenodo https URLs) to
  verified bytes, and
* optionally acts as a content store in an S3 bucket or an iRODS collection.

The modules are small and plain: :mod:`.errors` (failure types),
:mod:`.http` (retrying HTTP client), :mod:`.zenodo`, :mod:`.doi`,
:mod:`.vdi`, :mod:`.s3`, :mod:`.irods` (providers), :mod:`.urls` (scheme
dispatch), :mod:`.protocol` (annexremote adjustments) and :mod:`.main`
(the special remote itself).
"""
