"""Add entries to a split git index without reading its shared part.

In split-index mode (``core.splitIndex``) ``$GIT_DIR/index`` holds only the
entries that differ from a shared file ``sharedindex.<hash>`` (which holds
the rest, e.g. a million entries) plus a ``link`` extension naming it.
Git replays the split file's *added* entries on top of the shared ones, an
added entry replacing a shared entry of the same name (git's
``split-index.c:merge_base_index``).  Adding or replacing entries therefore
needs the small split file only: :func:`add_entries` rewrites it, under
git's own ``index.lock``, with

* the new entries merged (sorted) into its added section, with the stat
  data of the worktree files, so ``git status`` finds them clean;
* the cache tree (``TREE``) invalidated along the changed paths, exactly as
  git does when it updates a path;
* the old file's mtime, so git's racy-entry check (entries modified in the
  same second as the index was written get their content compared) sees
  the same index timestamp as before for every entry, shared ones included.

It declines (:class:`Unsupported`) whatever it does not handle exactly --
an index that is not split, a sparse index, extensions other than ``link``,
``TREE``, ``REUC``, ``EOIE`` and ``IEOT``, unmerged entries, a path that
would turn a file into a directory or back, too many entries outside the
shared index (``splitIndex.maxPercentChange``) -- and the caller lets git
do the update.  The shared index file is never opened for more than its
12-byte header.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct

HEADER = struct.Struct(">4sII")
STAT = struct.Struct(">10I")
SIGNATURE = b"DIRC"
NAMEMASK = 0xFFF
EXTENDED = 0x4000
STAGEMASK = 0x3000
# extensions kept as they are, or dropped (git rebuilds them: pure speed-ups
# whose offsets would be stale)
KEEP = {b"link", b"REUC"}
DROP = {b"EOIE", b"IEOT"}
DEFAULT_MAX_PERCENT = 20
# one cache-tree node: name NUL entry_count SP subtrees LF [oid]
TREE_NODE = re.compile(rb"([^\0]*)\0(-?\d+) (\d+)\n")


class Unsupported(Exception):
    """This update is git's to make."""


class Locked(OSError):
    """Another process holds ``index.lock``."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """git's offset varint (varint.c:decode_varint)."""
    c = data[pos]
    pos += 1
    val = c & 127
    while c & 128:
        c = data[pos]
        pos += 1
        val = ((val + 1) << 7) | (c & 127)
    return val, pos


def _encode_varint(value: int) -> bytes:
    out = [value & 127]
    value >>= 7
    while value:
        value -= 1
        out.append(128 | (value & 127))
        value >>= 7
    return bytes(reversed(out))


def parse(data: bytes, hashlen: int = 20):
    """(version, [(fixed part, name)], [(signature, payload)])."""
    if len(data) < HEADER.size + hashlen:
        raise Unsupported("index too short")
    sig, version, count = HEADER.unpack_from(data)
    if sig != SIGNATURE or version not in (2, 3, 4):
        raise Unsupported("not an index of version 2, 3 or 4")
    body = data[:-hashlen]
    trailer = data[-hashlen:]
    if trailer != bytes(hashlen) and \
            hashlib.sha1(body).digest() != trailer:
        raise Unsupported("index checksum mismatch")
    fixed = 40 + hashlen + 2
    entries = []
    pos, prev = HEADER.size, b""
    for _ in range(count):
        flags = int.from_bytes(data[pos + fixed - 2:pos + fixed], "big")
        size = fixed + (2 if flags & EXTENDED else 0)
        head = data[pos:pos + size]
        length = flags & NAMEMASK
        p = pos + size
        if version == 4:
            strip, p = _varint(data, p)
            keep = len(prev) - strip
            if keep < 0:
                raise Unsupported("malformed v4 name")
            end = data.index(b"\0", p) if length == NAMEMASK \
                else p + length - keep
            name = prev[:keep] + data[p:end]
            pos = end + 1
        else:
            end = data.index(b"\0", p) if length == NAMEMASK else p + length
            name = data[p:end]
            pos += (size + len(name) + 8) & ~7
        if data[end:end + 1] != b"\0":
            raise Unsupported("malformed entry name")
        entries.append((head, name))
        prev = name
    exts = []
    while pos < len(body):
        sig = data[pos:pos + 4]
        size = int.from_bytes(data[pos + 4:pos + 8], "big")
        exts.append((sig, data[pos + 8:pos + 8 + size]))
        pos += 8 + size
    if pos != len(body):
        raise Unsupported("malformed extensions")
    return version, entries, exts


def serialize(version: int, entries, exts, hashlen: int = 20,
              checksum: bool = True) -> bytes:
    out = bytearray(HEADER.pack(SIGNATURE, version, len(entries)))
    prev = b""
    for head, name in entries:
        out += head
        if version == 4:
            common = 0
            limit = min(len(prev), len(name))
            while common < limit and prev[common] == name[common]:
                common += 1
            out += _encode_varint(len(prev) - common)
            out += name[common:] + b"\0"
        else:
            out += name
            out += bytes(((len(head) + len(name) + 8) & ~7)
                         - len(head) - len(name))
        prev = name
    for sig, payload in exts:
        out += sig + len(payload).to_bytes(4, "big") + payload
    out += hashlib.sha1(out).digest() if checksum else bytes(hashlen)
    return bytes(out)


def new_entry(mode: str, sha: str, name: bytes, st: os.stat_result
              ) -> tuple[bytes, bytes]:
    """An index entry (stage 0, no extended flags) with this stat data."""
    m = 0xFFFFFFFF
    stat = STAT.pack(
        int(st.st_ctime) & m, st.st_ctime_ns % 10**9,
        int(st.st_mtime) & m, st.st_mtime_ns % 10**9,
        st.st_dev & m, st.st_ino & m, int(mode, 8), st.st_uid & m,
        st.st_gid & m, st.st_size & m)
    flags = min(len(name), NAMEMASK)
    return stat + bytes.fromhex(sha) + flags.to_bytes(2, "big"), name


def invalidate_tree(data: bytes, dirs: set[bytes], hashlen: int = 20
                    ) -> bytes:
    """The TREE extension with the nodes of `dirs` (b"" is the root)
    marked invalid, as git's cache_tree_invalidate_path does."""
    out = bytearray()
    pos, stack = 0, []      # stack: [path, subtrees still to come]
    node = TREE_NODE.match
    while pos < len(data):
        m = node(data, pos)
        if m is None:
            raise Unsupported("malformed cache tree")
        name, count, nsub = m.group(1), int(m.group(2)), int(m.group(3))
        start, pos = pos, m.end()
        if count >= 0:
            pos += hashlen
        if stack:
            stack[-1][1] -= 1
            parent = stack[-1][0]
            path = parent + b"/" + name if parent else name
        else:
            path = b""
        if path in dirs:
            out += name + b"\0-1 %d\n" % nsub
        else:
            out += data[start:pos]
        if nsub:
            stack.append([path, nsub])
        while stack and stack[-1][1] == 0:
            stack.pop()
    return bytes(out)


def _ancestors(name: bytes) -> list[bytes]:
    parts = name.split(b"/")
    return [b"/".join(parts[:i]) for i in range(len(parts))]


def merge_added(entries, new: dict[bytes, tuple[bytes, bytes]],
                hashlen: int = 20) -> list:
    """The split file's entries with `new` merged into its added section.

    The replaced section (leading entries with empty names, one per bit of
    the link extension's replace bitmap) stays first and unchanged."""
    n_replaced = 0
    while n_replaced < len(entries) and not entries[n_replaced][1]:
        n_replaced += 1
    added = entries[n_replaced:]
    names = {name for _, name in added}
    for head, name in added:
        if int.from_bytes(head[hashlen + 40:hashlen + 42], "big") \
                & STAGEMASK:
            raise Unsupported("unmerged entries")
    for name in new:
        if any(a in names for a in _ancestors(name)[1:]):
            raise Unsupported("%r would replace a file" % name)
    prefixes = tuple(name + b"/" for name in new)
    if any(n.startswith(prefixes) for n in names):
        raise Unsupported("a new entry would replace a directory")
    kept = [e for e in added if e[1] not in new]
    merged = sorted(kept + list(new.values()), key=lambda e: e[1])
    return entries[:n_replaced] + merged


def _max_percent(value: str | None) -> int:
    try:
        pct = int(value) if value is not None else -1
    except ValueError:
        pct = -1
    return pct if 0 <= pct <= 100 else DEFAULT_MAX_PERCENT


def _shared_count(git_dir: str, index_dir: str, hexsha: str) -> int:
    for d in (git_dir, index_dir):
        try:
            with open(os.path.join(d, "sharedindex." + hexsha), "rb") as f:
                sig, _, count = HEADER.unpack(f.read(HEADER.size))
        except (OSError, struct.error):
            continue
        if sig == SIGNATURE:
            return count
    raise Unsupported("shared index %s not found" % hexsha)


def rewrite(data: bytes, git_dir: str, index_dir: str,
            new: dict[bytes, tuple[bytes, bytes]],
            max_percent: str | None = None) -> bytes:
    """The new content of a split index file `data` with `new` added."""
    version, entries, exts = parse(data)
    sigs = [sig for sig, _ in exts]
    unknown = set(sigs) - KEEP - DROP - {b"TREE"}
    if unknown:
        raise Unsupported("extensions %s" % sorted(unknown))
    link = dict(exts).get(b"link")
    if link is None or not any(link[:20]):
        raise Unsupported("not a split index")
    entries = merge_added(entries, new)
    pct = _max_percent(max_percent)
    n_added = sum(1 for _, name in entries if name)
    total = _shared_count(git_dir, index_dir, link[:20].hex()) + n_added
    if pct == 0 or (pct < 100 and total * pct < n_added * 100):
        raise Unsupported("time for git to write a new shared index")
    dirs = {a for name in new for a in _ancestors(name)}
    out = []
    for sig, payload in exts:
        if sig == b"TREE":
            payload = invalidate_tree(payload, dirs)
        if sig not in DROP:
            out.append((sig, payload))
    return serialize(version, entries, out, checksum=any(data[-20:]))


def _lock(index: str) -> int:
    lock = index + ".lock"
    try:
        return os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError as e:
        raise Locked("%s exists: another git process is writing the index"
                     % lock) from e


def add_entries(index: str, git_dir: str, root: str,
                entries: dict[str, tuple[str, str]],
                max_percent: str | None = None) -> tuple[bytes, bytes]:
    """Add or replace `entries` (path -> (mode, sha)) in the split index
    file `index`; the worktree files under `root` give the stat data.

    Returns (old content, sha1 of the new content): what :func:`restore`
    needs to undo it.  Raises :class:`Unsupported` (nothing changed) when
    git must do it, :class:`Locked` when ``index.lock`` exists."""
    lock = index + ".lock"
    fd = _lock(index)
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                with open(index, "rb") as old:
                    data = old.read()
                    st = os.fstat(old.fileno())
            except FileNotFoundError as e:
                raise Unsupported("no index yet") from e
            new = {}
            for path, (mode, sha) in entries.items():
                name = os.fsencode(path)
                try:
                    st_file = os.lstat(os.path.join(root, path))
                except FileNotFoundError as e:
                    raise Unsupported("%s is gone" % path) from e
                new[name] = new_entry(mode, sha, name, st_file)
            written = rewrite(data, git_dir, os.path.dirname(index), new,
                              max_percent)
            f.write(written)
            os.fchmod(f.fileno(), st.st_mode & 0o7777)
        # same timestamp as before: git's racy check stays as it was
        os.utime(lock, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(lock, index)
    except BaseException:
        _unlink(lock)
        raise
    return data, hashlib.sha1(written).digest()


def restore(index: str, old: bytes, written: bytes) -> bool:
    """Put the split index file `old` back if `index` still holds exactly
    what :func:`add_entries` wrote (sha1 `written`); False (nothing
    changed) if anything rewrote it since, or it is locked."""
    lock = index + ".lock"
    try:
        fd = _lock(index)
    except Locked:
        return False
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                with open(index, "rb") as cur:
                    same = hashlib.sha1(cur.read()).digest() == written
                    st = os.fstat(cur.fileno())
            except FileNotFoundError:
                same = False
            if same:
                f.write(old)
                os.fchmod(f.fileno(), st.st_mode & 0o7777)
        if not same:
            _unlink(lock)
            return False
        os.utime(lock, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(lock, index)
    except BaseException:
        _unlink(lock)
        raise
    return True


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
