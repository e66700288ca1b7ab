"""What S3 ETags say about content, and the multipart defaults.

A single-part object's ETag is the MD5 of its bytes; a multipart object's
is ``md5(part MD5s concatenated)-N`` (see ``transfer.composite_etag``).
Server-side encryption with KMS or customer keys breaks both, so an ETag
that has neither form is not used for verification.
"""

from __future__ import annotations

from ..transfer import MIB

# defaults chosen from tools/bench_remote.py (docs/benchmarks/remote.md)
PARTSIZE = 16 * MIB
CONCURRENCY = 4
MIN_PARTSIZE = 5 * MIB  # S3's smallest part (all but the last)
MAX_PARTSIZE = 5 * 1024 * MIB
MAX_PARTS = 10000
METADATA_PARTSIZE = "hpcdata-partsize"  # x-amz-meta-... of our uploads


def plain_md5_etag(etag: str | None) -> str | None:
    """The MD5 in an ETag if it is a plain content MD5, else None."""
    etag = (etag or "").strip('"').lower()
    if len(etag) == 32 and all(c in "0123456789abcdef" for c in etag):
        return etag
    return None


def composite_form(etag: str | None) -> tuple[str, int] | None:
    """``"<md5 hex>-N"`` -> (etag without quotes, N); else None."""
    etag = (etag or "").strip('"').lower()
    digest, sep, count = etag.partition("-")
    if sep and count.isdigit() and plain_md5_etag(digest):
        return etag, int(count)
    return None


def part_size_for(size: int, partsize: int) -> int:
    """The part size for a ``size``-byte upload: ``partsize``, or larger
    (whole MiB) when the file would need more than ``MAX_PARTS`` parts."""
    needed = -(-size // MAX_PARTS)
    if needed <= partsize:
        return partsize
    return -(-needed // MIB) * MIB
