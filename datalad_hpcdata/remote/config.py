"""The remote's settings and credentials.

``CONFIGS`` are the parameters ``initremote``/``enableremote`` accept (git
annex lists them with LISTCONFIGS); ``ENV_OVERRIDES`` names environment
variables that win over them.  ``load`` reads and validates all of them at
once, so a wrong setting fails PREPARE with a clear message.

Credentials never go into the git-annex branch: S3 keys come from
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, else git-annex's local
credential store (filled from those variables at ``initremote``), else the
AWS profile / boto3 chain; the iRODS password from ``IRODS_PASSWORD``, else
that local store, else python-irodsclient's own ``~/.irods/.irodsA``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable, Dict, Optional, Tuple

from .errors import ConfigError
from .transfer import parse_size

if TYPE_CHECKING:
    from annexremote import Master

CONFIGS = {
    "store": "content store for 'git annex copy --to': none (default; "
             "resolver only), s3 or irods",
    "zenodo-url": "Zenodo base URL (default https://zenodo.org; "
                  "env DATALAD_HPCDATA_ZENODO_URL)",
    "doi-resolver": "DOI resolver base URL (default https://doi.org; "
                    "env DATALAD_HPCDATA_DOI_RESOLVER)",
    "vdi-servers": "vdi namespaces NAME=URL[,NAME=URL] "
                   "(env DATALAD_HPCDATA_VDI_SERVERS adds/overrides)",
    "bucket": "S3 store: bucket name",
    "prefix": "S3 store: prefix of object names (e.g. annex/)",
    "endpoint": "S3 endpoint URL for store and s3:// URLs (default: AWS)",
    "region": "S3 region",
    "addressing": "S3 addressing style: auto (default), path or virtual",
    "profile": "AWS profile name used for credentials",
    "publicurl": "S3 store: public base URL of the bucket, shown by whereis",
    "partsize": "S3: bytes per part of multipart uploads; larger files are "
                "sent in parts (default 16MiB; env "
                "DATALAD_HPCDATA_S3_PARTSIZE)",
    "concurrency": "S3: parts/ranges transferred at once per file "
                   "(default 4; env DATALAD_HPCDATA_S3_CONCURRENCY)",
    "irods-collection": "iRODS store: collection for keys, "
                        "e.g. /tempZone/home/alice/annex",
    "irods-env-file": "iRODS environment file (default "
                      "$IRODS_ENVIRONMENT_FILE or "
                      "~/.irods/irods_environment.json)",
}

ENV_OVERRIDES = {
    "zenodo-url": "DATALAD_HPCDATA_ZENODO_URL",
    "doi-resolver": "DATALAD_HPCDATA_DOI_RESOLVER",
    "partsize": "DATALAD_HPCDATA_S3_PARTSIZE",
    "concurrency": "DATALAD_HPCDATA_S3_CONCURRENCY",
}

# limits of partsize= and concurrency= (S3: parts of 5 MiB to 5 GiB)
PARTSIZE_RANGE = (5 * 1024 ** 2, 5 * 1024 ** 3)
CONCURRENCY_RANGE = (1, 64)

# same syntax as vdi-servers=; adds to and overrides the remote config
VDI_SERVERS_ENV = "DATALAD_HPCDATA_VDI_SERVERS"

# names under which git-annex's local credential store keeps our secrets
S3_CREDS = "hpcdata-s3"
IRODS_CREDS = "hpcdata-irods"

Settings = Dict[str, str]
Credentials = Tuple[str, str]


# ------------------------------------------------------------------ settings
def load(getconfig: Callable[[str], Optional[str]]) -> Settings:
    """Every setting of ``CONFIGS`` (in order), overridden and validated."""
    settings = {name: getconfig(name) or "" for name in CONFIGS}
    for name, var in ENV_OVERRIDES.items():
        if os.environ.get(var):
            settings[name] = os.environ[var]
    validate(settings)
    return settings


def validate(s: Settings) -> None:
    """Raise ``ConfigError`` for a wrong setting; normalises ``store``."""
    store = (s["store"] or "none").lower()
    if store not in ("none", "s3", "irods"):
        raise ConfigError(
            "store must be none, s3 or irods, not %r" % (s["store"],))
    s["store"] = store
    for name in ("zenodo-url", "doi-resolver", "endpoint", "publicurl"):
        if s[name] and not s[name].startswith(("http://", "https://")):
            raise ConfigError(
                "%s= must be an http(s) URL, not %r" % (name, s[name]))
    if store == "s3" and not s["bucket"]:
        raise ConfigError("store=s3 needs bucket=NAME")
    if store == "irods" and not s["irods-collection"].startswith("/"):
        raise ConfigError("store=irods needs irods-collection=/ZONE/PATH")
    vdi_servers(s)
    transfer_tuning(s)


def transfer_tuning(s: Settings) -> tuple[int | None, int | None]:
    """(partsize, concurrency) in bytes and transfers; None: the default."""
    partsize = concurrency = None
    if s["partsize"]:
        partsize = parse_size(s["partsize"], "partsize=")
        low, high = PARTSIZE_RANGE
        if not low <= partsize <= high:
            raise ConfigError("partsize= must be between 5MiB and 5GiB, "
                              "not %r" % s["partsize"])
    if s["concurrency"]:
        text = s["concurrency"].strip()
        low, high = CONCURRENCY_RANGE
        if not text.isdigit() or not low <= int(text) <= high:
            raise ConfigError("concurrency= must be a number from %s to %s, "
                              "not %r" % (low, high, s["concurrency"]))
        concurrency = int(text)
    return partsize, concurrency


def parse_servers(text: str | None) -> dict[str, str]:
    """``"a=http://x,b=http://y"`` -> {"a": "http://x", "b": "http://y"}."""
    servers = {}
    for item in (text or "").replace(" ", ",").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, url = item.partition("=")
        if not sep or not name or not url.startswith(("http://", "https://")):
            raise ConfigError("bad vdi-servers entry %r: expected "
                              "NAME=http(s)://HOST[:PORT]" % item)
        servers[name] = url.rstrip("/")
    return servers


def vdi_servers(settings: Settings) -> dict[str, str]:
    """vdi namespace -> base URL, from ``vdi-servers=`` and the environment."""
    servers = parse_servers(settings["vdi-servers"])
    servers.update(parse_servers(os.environ.get(VDI_SERVERS_ENV, "")))
    return servers


# --------------------------------------------------------------- credentials
def s3_credentials(annex: Master, settings: Settings) -> Credentials | None:
    """S3 (key, secret), or None for boto3's own chain (``profile=``)."""
    found = _env_s3_keys()
    if found:
        return found
    if settings.get("profile"):
        return None
    return _stored(annex, S3_CREDS)


def irods_password(annex: Master) -> str | None:
    if os.environ.get("IRODS_PASSWORD"):
        return os.environ["IRODS_PASSWORD"]
    creds = _stored(annex, IRODS_CREDS)
    return creds[1] if creds else None


def remember_credentials(annex: Master, settings: Settings) -> None:
    """Copy credentials from the environment into git-annex's local store.

    With encryption=none git-annex keeps SETCREDS data in
    .git/annex/creds/, never in the git-annex branch -- unless the user
    asked for embedcreds=yes, which we refuse for secrets.
    """
    if (annex.getconfig("embedcreds") or "").lower() in ("yes", "true"):
        raise ConfigError("embedcreds=yes would put secrets into the "
                          "git-annex branch; this remote does not support it")
    if settings["store"] == "s3" or settings["endpoint"]:
        found = _env_s3_keys()
        if found:
            annex.setcreds(S3_CREDS, found[0], found[1])
    if settings["store"] == "irods" and os.environ.get("IRODS_PASSWORD"):
        annex.setcreds(IRODS_CREDS,
                       os.environ.get("IRODS_USER_NAME", "irods"),
                       os.environ["IRODS_PASSWORD"])


def _env_s3_keys() -> Credentials | None:
    key = os.environ.get("AWS_ACCESS_KEY_ID")
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        return key, secret
    return None


def _stored(annex: Master, setting: str) -> Credentials | None:
    """(user, password) from git-annex's local credential store, or None."""
    try:
        creds = annex.getcreds(setting)
    except Exception:  # older git-annex or not stored
        return None
    if creds and creds.get("user") and creds.get("password"):
        return creds["user"], creds["password"]
    return None
