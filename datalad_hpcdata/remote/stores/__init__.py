"""Content stores (S3 buckets, iRODS collections) and their URLs.

``S3``/``Irods`` are clients of the service; they also resolve ``s3://`` and
``irods://`` URLs like the providers do.  ``S3Store``/``IrodsStore`` keep
annex keys for ``store=s3``/``store=irods`` and have the methods of
``Store``.  The optional client libraries (boto3, python-irodsclient) are
imported only when a client is made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..entries import ProgressFn


class Store(Protocol):
    """What the remote needs of a content store."""

    def setup(self) -> None:
        """Create what the store needs (bucket, collection) at initremote."""

    def store(self, key: str, path: str, progress: ProgressFn | None) -> None:
        """Upload ``path`` as ``key``; the stored object is complete or
        absent."""

    def retrieve(self, key: str, path: str,
                 progress: ProgressFn | None) -> None:
        """Download ``key`` into ``path`` (resuming), verified."""

    def present(self, key: str) -> bool:
        """Whether ``key`` is stored."""

    def remove(self, key: str) -> None:
        """Remove ``key``; removing an absent key succeeds."""

    def public_url(self, key: str) -> str | None:
        """A public URL of ``key``, or None."""

    def describe(self) -> str:
        """Where the store keeps keys, for messages."""
