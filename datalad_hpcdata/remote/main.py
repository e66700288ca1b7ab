"""``git-annex-remote-hpcdata``: the external special remote.

Resolver for ``zenodo://``, ``doi:``, ``vdi://``, ``s3://``, ``irods://``
and Zenodo https URLs, plus an optional content store (``store=s3`` or
``store=irods``).  See docs/remote/ for usage.
"""

import functools
import json
import logging
import os
import re
import sys

from annexremote import RemoteError, SpecialRemote
from annexremote.annexremote import ProtocolError

from .errors import ConfigError, HpcdataError, NotFound, VerificationError, describe, one_line
from .protocol import HpcdataMaster

log = logging.getLogger("datalad_hpcdata.remote")

CONFIGS = {
    "store": "content store for 'git annex copy --to': none (default; resolver only), s3 or irods",
    "zenodo-url": "Zenodo base URL (default https://zenodo.org; env DATALAD_HPCDATA_ZENODO_URL)",
    "doi-resolver": "DOI resolver base URL (default https://doi.org; env DATALAD_HPCDATA_DOI_RESOLVER)",
    "vdi-servers": "vdi namespaces NAME=URL[,NAME=URL] (env DATALAD_HPCDATA_VDI_SERVERS adds/overrides)",
    "bucket": "S3 store: bucket name",
    "prefix": "S3 store: prefix of object names (e.g. annex/)",
    "endpoint": "S3 endpoint URL for store and s3:// URLs (default: AWS)",
    "region": "S3 region",
    "addressing": "S3 addressing style: auto (default), path or virtual",
    "profile": "AWS profile name used for credentials",
    "publicurl": "S3 store: public base URL of the bucket, shown by whereis",
    "irods-collection": "iRODS store: collection for keys, e.g. /tempZone/home/alice/annex",
    "irods-env-file": "iRODS environment file (default $IRODS_ENVIRONMENT_FILE or ~/.irods/irods_environment.json)",
}

ENV_OVERRIDES = {
    "zenodo-url": "DATALAD_HPCDATA_ZENODO_URL",
    "doi-resolver": "DATALAD_HPCDATA_DOI_RESOLVER",
}

S3_CREDS = "hpcdata-s3"
STATE_VERSION = 1
PROGRESS_STEP = 256 * 1024
_KEY_SIZE = re.compile(r"-s(\d+)(?:-|$)")


def guarded(func):
    """Turn every failure into a one-line RemoteError."""

    @functools.wraps(func)
    def wrapper(self, *args, **kwargs):
        try:
            return func(self, *args, **kwargs)
        except RemoteError as exc:
            raise RemoteError(one_line(exc))
        except ProtocolError:
            raise
        except Exception as exc:
            log.debug("%s failed", func.__name__, exc_info=True)
            raise RemoteError(describe(exc))

    return wrapper


def key_size(key):
    match = _KEY_SIZE.search(key.split("--", 1)[0])
    return int(match.group(1)) if match else None


def key_md5(key):
    """The MD5 a MD5/MD5E key names, else None."""
    backend, _, rest = key.partition("-")
    if backend not in ("MD5", "MD5E") or "--" not in key:
        return None
    digest = key.split("--", 1)[1].split(".", 1)[0].lower()
    return digest if len(digest) == 32 else None


class Progress:
    """Cumulative PROGRESS messages, rate-limited by byte count."""

    def __init__(self, annex):
        self.annex = annex
        self.sent = -1

    def __call__(self, done):
        if self.sent < 0 or done - self.sent >= PROGRESS_STEP:
            self.annex.progress(done)
            self.sent = done


class HpcdataRemote(SpecialRemote):
    def __init__(self, annex):
        super().__init__(annex)
        self.configs = dict(CONFIGS)
        self.settings = None
        self._http = None
        self._providers = {}
        self._store = None

    # ------------------------------------------------------------ settings
    def _load_settings(self):
        if self.settings is None:
            settings = {}
            for name in CONFIGS:
                settings[name] = self.annex.getconfig(name) or ""
            for name, var in ENV_OVERRIDES.items():
                if os.environ.get(var):
                    settings[name] = os.environ[var]
            self._validate(settings)
            self.settings = settings  # only valid settings are ever kept
        return self.settings

    def _validate(self, s):
        store = (s["store"] or "none").lower()
        if store not in ("none", "s3", "irods"):
            raise ConfigError("store must be none, s3 or irods, not {!r}".format(s["store"]))
        s["store"] = store
        for name in ("zenodo-url", "doi-resolver", "endpoint", "publicurl"):
            if s[name] and not s[name].startswith(("http://", "https://")):
                raise ConfigError("{}= must be an http(s) URL, not {!r}".format(name, s[name]))
        if store == "s3" and not s["bucket"]:
            raise ConfigError("store=s3 needs bucket=NAME")
        if store == "irods" and not s["irods-collection"].startswith("/"):
            raise ConfigError("store=irods needs irods-collection=/ZONE/PATH")
        self._vdi_servers(s)

    def _vdi_servers(self, settings=None):
        from .providers.vdi import parse_servers

        servers = parse_servers((settings or self.settings)["vdi-servers"])
        servers.update(parse_servers(os.environ.get("DATALAD_HPCDATA_VDI_SERVERS", "")))
        return servers

    @property
    def http(self):
        if self._http is None:
            from .http import HttpClient

            self._http = HttpClient()
        return self._http

    def provider(self, name):
        if name not in self._providers:
            self._providers[name] = self._make_provider(name)
        return self._providers[name]

    def _make_provider(self, name):
        s = self._load_settings()
        if name == "zenodo":
            from .providers.zenodo import Zenodo

            return Zenodo(self.http, s["zenodo-url"] or None)
        if name == "doi":
            from .providers.doi import DoiResolver

            return DoiResolver(self.http, self.provider("zenodo"), s["doi-resolver"] or None)
        if name == "vdi":
            from .providers.vdi import Vdi

            return Vdi(self.http, self._vdi_servers())
        if name == "s3":
            from .stores.s3 import S3

            return S3(endpoint=s["endpoint"], region=s["region"], addressing=s["addressing"],
                      profile=s["profile"], credentials=self._s3_credentials())
        if name == "irods":
            from .stores.irods import Irods

            return Irods(env_file=s["irods-env-file"] or None, password=self._irods_password())
        raise ConfigError("unknown provider {}".format(name))

    def store_backend(self):
        s = self._load_settings()
        if s["store"] == "none":
            return None
        if self._store is None:
            if s["store"] == "s3":
                from .stores.s3 import S3Store

                self._store = S3Store(self.provider("s3"), s["bucket"], s["prefix"], s["publicurl"])
            else:
                from .stores.irods import IrodsStore

                self._store = IrodsStore(self.provider("irods"), s["irods-collection"])
        return self._store

    # ---------------------------------------------------------- credentials
    def _getcreds(self, setting):
        try:
            creds = self.annex.getcreds(setting)
        except Exception:  # older git-annex or not stored
            return None
        if creds and creds.get("user") and creds.get("password"):
            return creds["user"], creds["password"]
        return None

    def _s3_credentials(self):
        key = os.environ.get("AWS_ACCESS_KEY_ID")
        secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
        if key and secret:
            return key, secret
        if self.settings.get("profile"):
            return None
        return self._getcreds(S3_CREDS)

    def _irods_password(self):
        if os.environ.get("IRODS_PASSWORD"):
            return os.environ["IRODS_PASSWORD"]
        creds = self._getcreds("hpcdata-irods")
        return creds[1] if creds else None

    def _remember_credentials(self):
        """Copy credentials from the environment into git-annex's local store.

        With encryption=none git-annex keeps SETCREDS data in
        .git/annex/creds/, never in the git-annex branch -- unless the user
        asked for embedcreds=yes, which we refuse for secrets.
        """
        s = self.settings
        if (self.annex.getconfig("embedcreds") or "").lower() in ("yes", "true"):
            raise ConfigError("embedcreds=yes would put secrets into the git-annex branch; "
                              "this remote does not support it")
        if s["store"] == "s3" or s["endpoint"]:
            key = os.environ.get("AWS_ACCESS_KEY_ID")
            secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
            if key and secret:
                self.annex.setcreds(S3_CREDS, key, secret)
        if s["store"] == "irods" and os.environ.get("IRODS_PASSWORD"):
            self.annex.setcreds("hpcdata-irods", os.environ.get("IRODS_USER_NAME", "irods"),
                                os.environ["IRODS_PASSWORD"])

    # ------------------------------------------------------------- lifecycle
    @guarded
    def initremote(self):
        self.settings = None
        self._load_settings()
        self._remember_credentials()
        store = self.store_backend()
        if store is not None:
            store.setup()

    @guarded
    def prepare(self):
        self._load_settings()

    def getavailability(self):
        return "global"

    # ---------------------------------------------------------- URL handling
    def scheme_of(self, url):
        """Provider name that handles ``url``, or None."""
        low = url.lower()
        if low.startswith("zenodo://"):
            return "zenodo"
        if low.startswith("doi:"):
            return "doi"
        if low.startswith("vdi://"):
            return "vdi"
        if low.startswith("s3://"):
            return "s3"
        if low.startswith("irods://"):
            return "irods"
        if low.startswith(("http://", "https://")):
            if self.provider("zenodo").parse_http(url) is not None:
                return "zenodo"
        return None

    def entries(self, url):
        name = self.scheme_of(url)
        if name is None:
            raise HpcdataError("this remote does not handle {}".format(url))
        return self.provider(name).entries(url)

    def single_entry(self, url):
        found = self.entries(url)
        if len(found) != 1:
            raise HpcdataError("{} names {} files, not one".format(url, len(found)))
        return found[0]

    def claimurl(self, url):
        try:
            self._load_settings()
            return self.scheme_of(url) is not None
        except Exception:
            log.debug("claimurl failed", exc_info=True)
            return False

    @guarded
    def checkurl(self, url):
        found = self.entries(url)
        single = self._is_single_file_url(url)
        if single:
            entry = found[0]
            return [{"size": entry.size if entry.size is not None else "UNKNOWN",
                     "filename": entry.filename}]
        from .names import multi_filename

        return [{"url": e.url.replace(" ", "%20"),
                 "size": e.size if e.size is not None else "UNKNOWN",
                 "filename": multi_filename(e.filename)} for e in found]

    def _is_single_file_url(self, url):
        name = self.scheme_of(url)
        if name == "zenodo":
            return self.provider("zenodo").parse(url)[1] is not None
        if name == "doi":
            return self.provider("doi").target(url)[2] is not None
        if name == "vdi":
            from .providers.vdi import parse_vdi

            return parse_vdi(url)[2] is not None
        return True

    def recorded_urls(self, key):
        urls = []
        for url in self.annex.geturls(key, ""):
            if url and url not in urls and self.claimurl(url):
                urls.append(url)
        return urls

    # ------------------------------------------------------------ key state
    def _state(self, key):
        try:
            raw = self.annex.getstate(key)
        except Exception:
            return {}
        try:
            state = json.loads(raw) if raw else {}
        except ValueError:
            return {}
        return state if isinstance(state, dict) else {}

    def _state_for(self, key, url):
        """The pin recorded for ``key`` fetched from ``url`` (may be empty).

        ``addurl`` downloads through a temporary ``VURL-s<size>--<url>`` key,
        and git-annex keeps the state set for it.  When the final key has no
        state of its own yet, that temporary key's state is used, so the
        version seen at ``addurl`` time is the one fetched later.
        """
        own = self._state(key)
        if own.get("url") == url:
            return own
        size = key_size(key)
        if (not key.startswith(("URL-", "VURL-")) and size is not None
                and len(url) <= 96 and not any(ch.isspace() for ch in url)):
            for backend in ("VURL", "URL"):
                state = self._state("{}-s{}--{}".format(backend, size, url))
                if state.get("url") == url:
                    return state
        return {}

    def _record_state(self, key, url, entry):
        if entry.checksum is None and entry.size is None:
            return
        new = {"v": STATE_VERSION, "url": url, "pin": entry.pin, "checksum": entry.checksum_text}
        old = self._state(key)
        if {k: old.get(k) for k in new} != new:
            self.annex.setstate(key, json.dumps(new, separators=(",", ":"), sort_keys=True))

    def _resolve_for_key(self, key, url, state):
        """Entry for ``url`` holding ``key``'s content, honouring the pin."""
        target = state.get("pin") or url
        entry = self.single_entry(target)
        expected_size = key_size(key)
        if expected_size is not None and entry.size is not None and entry.size != expected_size:
            raise VerificationError(
                "{} now has {} bytes but this file has {} bytes: the upstream content changed"
                .format(target, entry.size, expected_size))
        if entry.checksum:
            pinned = state.get("checksum")
            algo, digest = entry.checksum
            if pinned and pinned.split(":", 1)[0] == algo and pinned != entry.checksum_text:
                raise VerificationError(
                    "{} now publishes {} but {} was recorded when it was first fetched: "
                    "the upstream content changed".format(target, entry.checksum_text, pinned))
            md5 = key_md5(key)
            if md5 and algo == "md5" and md5 != digest:
                raise VerificationError(
                    "{} publishes md5:{} but the key expects md5:{}".format(target, digest, md5))
        return entry

    # ------------------------------------------------------------- transfers
    @guarded
    def transfer_store(self, key, local_file):
        store = self.store_backend()
        if store is None:
            raise HpcdataError("this remote only resolves URLs (store=none); "
                               "configure store=s3 or store=irods to upload")
        store.store(key, local_file, Progress(self.annex))
        url = store.public_url(key)
        if url:
            self.annex.seturlpresent(key, url)

    @guarded
    def transfer_retrieve(self, key, local_file):
        problems = []
        store = self.store_backend()
        if store is not None:
            try:
                store.retrieve(key, local_file, Progress(self.annex))
                return
            except NotFound:
                problems.append("not in {}".format(store.describe()))
        for url in self.recorded_urls(key):
            try:
                entry = self._resolve_for_key(key, url, self._state_for(key, url))
                entry.fetch(local_file, Progress(self.annex))
            except HpcdataError as exc:
                problems.append("{}: {}".format(url, describe(exc)))
                continue
            self._record_state(key, url, entry)
            return
        if not problems:
            problems.append("no URL handled by this remote is recorded for this key")
        raise HpcdataError("; ".join(problems))

    @guarded
    def checkpresent(self, key):
        store = self.store_backend()
        if store is not None and store.present(key):
            return True
        unknown = []
        for url in self.recorded_urls(key):
            try:
                self._resolve_for_key(key, url, self._state_for(key, url))
                return True
            except NotFound:
                continue
            except VerificationError:
                continue  # what is there now is not this key's content
            except HpcdataError as exc:
                unknown.append("{}: {}".format(url, describe(exc)))
        if unknown:
            raise HpcdataError("cannot tell: " + "; ".join(unknown))
        return False

    @guarded
    def remove(self, key):
        store = self.store_backend()
        if store is None:
            raise HpcdataError("cannot remove content from a read-only service; "
                               "use 'git annex drop' locally or 'git annex rmurl'")
        store.remove(key)
        url = store.public_url(key)
        if url:
            self.annex.seturlmissing(key, url)

    def whereis(self, key):
        try:
            settings = self._load_settings()
            if settings["store"] != "none":
                url = self.store_backend().public_url(key)
                if url:
                    return url
            for url in self.recorded_urls(key):
                state = self._state_for(key, url)
                if state.get("pin") and state.get("pin") != url:
                    return "{} (pinned version of {})".format(state["pin"], url)
        except Exception:
            log.debug("whereis failed", exc_info=True)
        return None


def main():
    """Entry point of ``git-annex-remote-hpcdata``."""
    output = sys.stdout
    sys.stdout = sys.stderr  # nothing but the protocol may reach stdout
    master = HpcdataMaster(output)
    remote = HpcdataRemote(master)
    master.LinkRemote(remote)
    logger = logging.getLogger("datalad_hpcdata.remote")
    logger.addHandler(master.LoggingHandler())
    logger.setLevel(logging.DEBUG if os.environ.get("DATALAD_HPCDATA_REMOTE_DEBUG") else logging.INFO)
    logger.propagate = False
    try:
        master.Listen()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
