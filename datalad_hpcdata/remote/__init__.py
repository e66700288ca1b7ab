"""git-annex external special remote ``hpcdata``.

One executable (``git-annex-remote-hpcdata``) that

* resolves persistent identifiers and object-store URLs (``zenodo://``,
  ``doi:``, ``vdi://``, ``s3://``, ``irods://`` and Zenodo https URLs) to
  verified bytes, and
* optionally acts as a content store in an S3 bucket or an iRODS collection.

Layout:

* :mod:`.main` -- the entry point (``main()``, logging set-up);
* :mod:`.remote` -- ``HpcdataRemote``, the protocol requests;
* :mod:`.protocol` -- annexremote adjustments, one-line failures, progress;
* :mod:`.config` -- settings, their validation and credentials;
* :mod:`.pins` -- the version recorded per key (git-annex per-key state);
* :mod:`.providers` -- URL resolvers: :mod:`.providers.zenodo`,
  :mod:`.providers.doi`, :mod:`.providers.vdi`;
* :mod:`.stores` -- content stores and their URLs: :mod:`.stores.s3`,
  :mod:`.stores.irods`;
* :mod:`.http` (retrying HTTP client), :mod:`.transfer` (checksums, resume,
  progress shared by all transfers), :mod:`.entries` (a resolved file),
  :mod:`.names` (file-name checks), :mod:`.errors` (failure types).

Nothing here imports from the rest of ``datalad_hpcdata``.
"""

from __future__ import annotations
