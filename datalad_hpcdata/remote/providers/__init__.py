"""URL resolvers: Zenodo records, DOIs and vdi views.

Each provider turns the URLs of its scheme into ``Entry`` objects
(``entries(url)``, see ``remote/entries.py``) whose ``fetch`` downloads and
verifies one file.
The remote imports a provider module only when a URL of its scheme is
first seen.  ``s3://`` and ``irods://`` URLs are resolved by the store
clients in ``remote/stores/``, which also hold content.
"""

from __future__ import annotations
