"""``--container NAME``: run a job's batch script in a registered container.

Containers are the ones ``datalad containers-add`` registered (the
datalad-container extension, needed only to look a name up).  The user's
submission ``sbatch [options] SCRIPT [ARGS]`` becomes ``sbatch [options]``
with a generated batch script on standard input:

* the script's ``#!`` line and its directive header (``#SBATCH`` lines,
  read by sbatch exactly as before, preceded by a default job name, the
  script's base name);
* ``export DATALAD_CONTAINER_NAME=NAME`` (as ``containers-run`` sets it);
* the container's call format with ``{img}``, ``{cmd}``, ``{img_dspath}``,
  ``{img_dirpath}`` and ``{python}`` filled in as ``containers-run`` does,
  ``{cmd}`` being the script run by its own interpreter with its
  arguments.

The image and the container's extra inputs become extra inputs of the job
(fetched at schedule time, staged with ``--alt-dir``), recorded first in
``extra_inputs`` as ``containers-run`` records them; the script becomes an
input too, since it now runs inside the container from the job's
directory.  The record also carries ``container``: the name, image, call
format and extra inputs, so ``slurm-reschedule`` runs the job the same way
without asking datalad-container again.
"""

from __future__ import annotations

import os
import posixpath
import shlex
import sys

from ..dataset.handle import DatasetHandle
from ..dataset.paths import PathError, canonical_spec, relative_to_pwd
from ..slurm.argv import is_sbatch
from ..slurm.batch import BatchError, header, interpreter, script_index
from .spec import JobSpec

PLACEHOLDERS = ("img", "cmd", "img_dspath", "img_dirpath", "python")
NAME_ENV = "DATALAD_CONTAINER_NAME"


class ContainerError(ValueError):
    """Bad --container input; nothing was changed."""


def registered(handle: DatasetHandle, name: str) -> dict:
    """The containers-list record of container `name` (by name or image
    path, as containers-run finds it); no subdataset is installed."""
    try:
        from datalad_container.containers_list import ContainersList
    except ImportError:
        raise ContainerError(
            "--container needs the datalad-container extension, which is "
            "not installed (pip install datalad-container, or "
            "datalad-hpcdata[containers])")
    found = [r for r in ContainersList.__call__(
        dataset=handle.root, recursive="/" in name, return_type="list",
        on_failure="ignore", result_renderer="disabled",
        result_filter=None, result_xfm=None)
        if r.get("action") == "containers" and r.get("status") == "ok"]
    for rec in found:
        if rec["name"] == name:
            return rec
    full = os.path.realpath(os.path.join(handle.root, name))
    for rec in found:
        if os.path.realpath(rec["path"]) == full:
            return rec
    raise ContainerError(
        "unknown container %r: %s" % (name, "known containers are %s" % (
            ", ".join(sorted(r["name"] for r in found))) if found else
            "no container is registered in this dataset (datalad "
            "containers-add NAME --image PATH --call-fmt FORMAT)"))


def from_registration(rec: dict, pwd_abs: str) -> dict:
    """What the record keeps of a registered container (paths relative
    to the job's directory, like every path in a run record)."""
    image = os.path.relpath(rec["path"], pwd_abs)
    dspath = os.path.relpath(rec.get("parentds") or pwd_abs, pwd_abs)
    extra = rec.get("extra-input") or []
    extra = [extra] if isinstance(extra, str) else list(extra)
    try:
        extra = [x.format(img_dspath=dspath,
                          img_dirpath=os.path.dirname(image) or ".")
                 for x in extra]
    except (KeyError, IndexError, ValueError) as e:
        raise ContainerError("container %r: bad placeholder in an extra "
                             "input: %s" % (rec["name"], e))
    return {"name": rec["name"], "image": image, "image_dspath": dspath,
            "cmdexec": rec.get("cmdexec") or "{img} {cmd}",
            "extra_inputs": extra}


def with_container(handle: DatasetHandle, spec: JobSpec, container,
                   pwd_abs: str) -> JobSpec:
    """`spec` changed to run in `container` (a name, or the ``container``
    entry of a run record); ContainerError for unusable input."""
    if isinstance(container, dict):
        box = {k: container.get(k) for k in (
            "name", "image", "image_dspath", "cmdexec", "extra_inputs")}
        box["extra_inputs"] = list(box["extra_inputs"] or [])
    else:
        box = from_registration(registered(handle, container), pwd_abs)
    name = box["name"]
    paths = [box["image"]] + box["extra_inputs"]
    canon = [_existing(handle, p, pwd_abs, name) for p in paths]
    if not is_sbatch(spec.argv):
        raise ContainerError("--container needs the command to be an sbatch "
                             "call (sbatch [options] SCRIPT [ARGS])")
    try:
        at = script_index(spec.argv)
        if at is None:
            raise BatchError("the command names no batch script")
        script = spec.argv[at]
        shebang, head = header(_read(pwd_abs, script))
        interp = interpreter(shebang)
    except BatchError as e:
        raise ContainerError("--container: %s" % e)
    try:
        script_spec = canonical_spec(script, handle.root, pwd_abs)
        script = relative_to_pwd(script_spec, spec.pwd)
        canon.append(script_spec)
    except PathError:
        pass      # a script outside the dataset is used where it is
    cmd = shlex.join(interp + [script] + spec.argv[at + 1:])
    line = _call(box, cmd)
    recorded = [relative_to_pwd(c, spec.pwd) for c in canon[:len(paths)]]
    spec.extra_inputs = _unique(recorded + spec.extra_inputs)
    spec.input_specs = _unique(spec.input_specs + canon)
    spec.argv = spec.argv[:at]
    spec.container = dict(box, batch_script=batch_script(
        shebang, head, posixpath.basename(script), name, line))
    return spec


def _existing(handle: DatasetHandle, path: str, pwd_abs: str,
              name: str) -> str:
    try:
        canon = canonical_spec(path, handle.root, pwd_abs)
    except PathError as e:
        raise ContainerError("container %r: image or extra input %s"
                             % (name, e))
    if not os.path.lexists(os.path.join(handle.root, canon)):
        raise ContainerError("container %r: %r does not exist in the "
                             "dataset" % (name, path))
    return canon


def _read(pwd_abs: str, script: str) -> str:
    path = os.path.join(pwd_abs, script)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(1 << 20)
    except OSError as e:
        raise BatchError("cannot read the batch script %s: %s"
                         % (script, e.strerror or e))


def _call(box: dict, cmd: str) -> str:
    image = box["image"]
    values = dict(img=shlex.quote(image), cmd=cmd,
                  img_dspath=shlex.quote(box["image_dspath"] or "."),
                  img_dirpath=shlex.quote(os.path.dirname(image) or "."),
                  python=shlex.quote(sys.executable))
    try:
        return box["cmdexec"].format(**values)
    except (KeyError, IndexError, ValueError) as e:
        raise ContainerError(
            "container %r: cannot use its call format %r (%s); known "
            "placeholders: %s" % (box["name"], box["cmdexec"], e,
                                  ", ".join("{%s}" % p
                                            for p in PLACEHOLDERS)))


def batch_script(shebang: str, head: list[str], script_name: str,
                 name: str, line: str) -> str:
    """The generated batch script (sbatch reads it on standard input)."""
    lines = [shebang]
    if script_name and not any(c.isspace() for c in script_name):
        # the name sbatch would give the job; the script's own wins
        lines.append("#SBATCH --job-name=%s" % script_name)
    lines += head
    lines += ["# generated by datalad-hpcdata: %s in container %s"
              % (script_name, name),
              "export %s=%s" % (NAME_ENV, shlex.quote(name)), line, ""]
    return "\n".join(lines)


def record_entry(container: dict | None) -> dict | None:
    """The ``container`` entry of a run record (without the generated
    script)."""
    if not container:
        return None
    return {k: v for k, v in container.items() if k != "batch_script"}


def _unique(items: list[str]) -> list[str]:
    out = []
    for item in items:
        if item not in out:
            out.append(item)
    return out
