"""The special remote: ``HpcdataRemote``, one method per protocol request.

It resolves ``zenodo://``, ``doi:``, ``vdi://``, ``s3://``, ``irods://``
and Zenodo https URLs to verified bytes (a provider per scheme, see
:mod:`.providers` and :mod:`.stores`) and, with ``store=s3`` or
``store=irods``, keeps content in a store.  Settings come from
:mod:`.config`, the version fetched for a key is pinned with :mod:`.pins`.
Providers, stores and the HTTP client are imported and made on first use:
start-up of the remote stays cheap.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from annexremote import SpecialRemote

from . import config
from .errors import (
    ConfigError,
    HpcdataError,
    NotFound,
    VerificationError,
    describe,
)
from .names import multi_filename
from .pins import Pins, check
from .protocol import Progress, guarded

if TYPE_CHECKING:
    from annexremote import Master

    from .entries import Entry
    from .http import HttpClient
    from .stores import Store

lgr = logging.getLogger("datalad.hpcdata.remote")

# URL prefixes (lower case) and the provider that resolves them; https URLs
# under the Zenodo base are Zenodo's too (see ``scheme_of``)
SCHEMES = (
    ("zenodo://", "zenodo"),
    ("doi:", "doi"),
    ("vdi://", "vdi"),
    ("s3://", "s3"),
    ("irods://", "irods"),
)


class HpcdataRemote(SpecialRemote):
    def __init__(self, annex: Master) -> None:
        super().__init__(annex)
        self.configs = dict(config.CONFIGS)
        self.settings: config.Settings | None = None
        self.pins = Pins(annex)
        self._http: HttpClient | None = None
        self._providers: dict[str, Any] = {}
        self._store: Store | None = None

    # ------------------------------------------------------------ settings
    def _load_settings(self) -> config.Settings:
        if self.settings is None:
            # only valid settings are ever kept
            self.settings = config.load(self.annex.getconfig)
        return self.settings

    @property
    def http(self) -> HttpClient:
        if self._http is None:
            from .http import HttpClient

            self._http = HttpClient()
        return self._http

    def provider(self, name: str) -> Any:
        """The provider for scheme ``name`` (made on first use)."""
        if name not in self._providers:
            self._providers[name] = self._make_provider(name)
        return self._providers[name]

    def _make_provider(self, name: str) -> Any:
        s = self._load_settings()
        if name == "zenodo":
            from .providers.zenodo import Zenodo

            return Zenodo(self.http, s["zenodo-url"] or None)
        if name == "doi":
            from .providers.doi import DoiResolver

            return DoiResolver(self.http, self.provider("zenodo"),
                               s["doi-resolver"] or None)
        if name == "vdi":
            from .providers.vdi import Vdi

            return Vdi(self.http, config.vdi_servers(s))
        if name == "s3":
            from .stores.s3 import S3

            partsize, concurrency = config.transfer_tuning(s)
            tuning = {name: value for name, value in (
                ("partsize", partsize), ("concurrency", concurrency))
                if value is not None}
            return S3(endpoint=s["endpoint"], region=s["region"],
                      addressing=s["addressing"], profile=s["profile"],
                      credentials=config.s3_credentials(self.annex, s),
                      **tuning)
        if name == "irods":
            from .stores.irods import Irods

            return Irods(env_file=s["irods-env-file"] or None,
                         password=config.irods_password(self.annex))
        raise ConfigError("unknown provider %s" % name)

    def store_backend(self) -> Store | None:
        """The content store (``store=``), or None for a resolver only."""
        s = self._load_settings()
        if s["store"] == "none":
            return None
        if self._store is None:
            if s["store"] == "s3":
                from .stores.s3 import S3Store

                self._store = S3Store(self.provider("s3"), s["bucket"],
                                      s["prefix"], s["publicurl"])
            else:
                from .stores.irods import IrodsStore

                self._store = IrodsStore(self.provider("irods"),
                                         s["irods-collection"])
        return self._store

    # ------------------------------------------------------------- lifecycle
    @guarded
    def initremote(self) -> None:
        self.settings = None
        settings = self._load_settings()
        config.remember_credentials(self.annex, settings)
        store = self.store_backend()
        if store is not None:
            store.setup()

    @guarded
    def prepare(self) -> None:
        self._load_settings()

    def getavailability(self) -> str:
        return "global"

    # ---------------------------------------------------------- URL handling
    def scheme_of(self, url: str) -> str | None:
        """Provider name that handles ``url``, or None."""
        low = url.lower()
        for prefix, name in SCHEMES:
            if low.startswith(prefix):
                return name
        if low.startswith(("http://", "https://")):
            if self.provider("zenodo").parse_http(url) is not None:
                return "zenodo"
        return None

    def entries(self, url: str) -> list[Entry]:
        name = self.scheme_of(url)
        if name is None:
            raise HpcdataError("this remote does not handle %s" % url)
        return self.provider(name).entries(url)

    def single_entry(self, url: str) -> Entry:
        found = self.entries(url)
        if len(found) != 1:
            raise HpcdataError(
                "%s names %s files, not one" % (url, len(found)))
        return found[0]

    def claimurl(self, url: str) -> bool:
        try:
            self._load_settings()
            return self.scheme_of(url) is not None
        except Exception:
            lgr.debug("claimurl failed", exc_info=True)
            return False

    @guarded
    def checkurl(self, url: str) -> list[dict[str, Any]]:
        found = self.entries(url)
        if self._is_single_file_url(url):
            return [{"size": _size(found[0]), "filename": found[0].filename}]
        return [{"url": e.url.replace(" ", "%20"), "size": _size(e),
                 "filename": multi_filename(e.filename)} for e in found]

    def _is_single_file_url(self, url: str) -> bool:
        name = self.scheme_of(url)
        if name == "zenodo":
            return self.provider("zenodo").parse(url)[1] is not None
        if name == "doi":
            return self.provider("doi").target(url)[2] is not None
        if name == "vdi":
            from .providers.vdi import parse_vdi

            return parse_vdi(url)[2] is not None
        return True

    def recorded_urls(self, key: str) -> list[str]:
        """The key's URLs (in git-annex's order) this remote handles."""
        urls: list[str] = []
        for url in self.annex.geturls(key, ""):
            if url and url not in urls and self.claimurl(url):
                urls.append(url)
        return urls

    def _resolve_for_key(self, key: str, url: str) -> Entry:
        """Entry for ``url`` holding ``key``'s content, honouring the pin."""
        pin = self.pins.get(key, url)
        target = pin.get("pin") or url
        entry = self.single_entry(target)
        check(key, target, entry, pin)
        return entry

    # ------------------------------------------------------------- transfers
    @guarded
    def transfer_store(self, key: str, local_file: str) -> None:
        store = self.store_backend()
        if store is None:
            raise HpcdataError(
                "this remote only resolves URLs (store=none); "
                "configure store=s3 or store=irods to upload")
        progress = Progress(self.annex)
        try:
            store.store(key, local_file, progress)
        finally:
            progress.close()  # no PROGRESS after the reply
        url = store.public_url(key)
        if url:
            self.annex.seturlpresent(key, url)

    @guarded
    def transfer_retrieve(self, key: str, local_file: str) -> None:
        progress = Progress(self.annex)
        try:
            self._retrieve(key, local_file, progress)
        finally:
            progress.close()  # no PROGRESS after the reply

    def _retrieve(self, key: str, local_file: str,
                  progress: Progress) -> None:
        problems = []
        store = self.store_backend()
        if store is not None:
            try:
                store.retrieve(key, local_file, progress)
                return
            except NotFound:
                problems.append("not in %s" % store.describe())
        for url in self.recorded_urls(key):
            try:
                entry = self._resolve_for_key(key, url)
                entry.fetch(local_file, progress)
            except HpcdataError as exc:
                problems.append("%s: %s" % (url, describe(exc)))
                continue
            self.pins.record(key, url, entry)
            return
        if not problems:
            problems.append(
                "no URL handled by this remote is recorded for this key")
        raise HpcdataError("; ".join(problems))

    @guarded
    def checkpresent(self, key: str) -> bool:
        store = self.store_backend()
        if store is not None and store.present(key):
            return True
        unknown = []
        for url in self.recorded_urls(key):
            try:
                self._resolve_for_key(key, url)
                return True
            except NotFound:
                continue
            except VerificationError:
                continue  # what is there now is not this key's content
            except HpcdataError as exc:
                unknown.append("%s: %s" % (url, describe(exc)))
        if unknown:
            raise HpcdataError("cannot tell: " + "; ".join(unknown))
        return False

    @guarded
    def remove(self, key: str) -> None:
        store = self.store_backend()
        if store is None:
            raise HpcdataError(
                "cannot remove content from a read-only service; "
                "use 'git annex drop' locally or 'git annex rmurl'")
        store.remove(key)
        url = store.public_url(key)
        if url:
            self.annex.seturlmissing(key, url)

    def whereis(self, key: str) -> str | None:
        try:
            settings = self._load_settings()
            if settings["store"] != "none":
                url = self.store_backend().public_url(key)
                if url:
                    return url
            for url in self.recorded_urls(key):
                pin = self.pins.get(key, url)
                if pin.get("pin") and pin.get("pin") != url:
                    return "%s (pinned version of %s)" % (pin["pin"], url)
        except Exception:
            lgr.debug("whereis failed", exc_info=True)
        return None


def _size(entry: Entry) -> int | str:
    """An entry's size for CHECKURL replies."""
    return entry.size if entry.size is not None else "UNKNOWN"
