"""Sphinx directives that generate reference pages from the code.

* ``.. hpcdata-command:: slurm-schedule`` builds the command's argparse
  parser with DataLad's own CLI machinery (``datalad.cli.parser``), the
  same parser ``datalad slurm-schedule --help`` prints, and renders its
  synopsis, description, every option (value, default, help) and the
  ``_examples_`` (command line and Python);
* ``.. hpcdata-remote-params::`` renders the special remote's ``CONFIGS``
  (what ``initremote`` accepts, as git-annex's LISTCONFIGS reports);
* ``.. hpcdata-remote-urls::`` renders the URL prefixes the remote claims.

So the reference cannot drift from the code; tests/test_docs.py compares
the built pages with ``--help``.
"""

from __future__ import annotations

import argparse
import textwrap

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList


def command_spec(name: str) -> tuple:
    from datalad_hpcdata import command_suite
    for spec in command_suite[1]:
        if spec[2] == name:
            return spec
    raise ValueError("no command %r in datalad_hpcdata's suite" % name)


def command_parser(name: str) -> argparse.ArgumentParser:
    """The parser `datalad NAME --help` uses."""
    from datalad.cli.parser import add_subparser
    top = argparse.ArgumentParser(prog="datalad")
    subs = top.add_subparsers()
    return add_subparser(command_spec(name), subs, name,
                         argparse.RawDescriptionHelpFormatter)


def option_rows(parser: argparse.ArgumentParser) -> list[dict]:
    rows = []
    for act in parser._actions:
        if act.help == argparse.SUPPRESS:
            continue
        flag = act.nargs == 0
        metavar = act.metavar or (act.dest.upper() if act.option_strings
                                  else act.dest)
        if isinstance(metavar, tuple):
            metavar = " ".join(metavar)
        names = list(act.option_strings) or [metavar]
        rows.append(dict(
            names=names, flag=flag, positional=not act.option_strings,
            value="" if flag or not act.option_strings else str(metavar),
            default=act.default, help=(act.help or "").strip()))
    return rows


def _para(text: str) -> nodes.paragraph:
    return nodes.paragraph(text, text)


def _literal_block(text: str, language: str) -> nodes.literal_block:
    block = nodes.literal_block(text, text)
    block["language"] = language
    return block


class CommandDirective(Directive):
    required_arguments = 1

    def run(self):
        from datalad.cli.interface import alter_interface_docs_for_cmdline
        from datalad.interface.base import get_cmd_doc, load_interface
        name = self.arguments[0]
        spec = command_spec(name)
        intf = load_interface(spec)
        parser = command_parser(name)
        out = []
        usage = parser.format_usage().strip()
        usage = usage[len("usage: "):] if usage.lower().startswith(
            "usage: ") else usage
        out.append(nodes.rubric("", "Synopsis"))
        out.append(_literal_block(usage, "text"))
        doc = alter_interface_docs_for_cmdline(get_cmd_doc(intf))
        body = nodes.container()
        self.state.nested_parse(StringList(doc.splitlines()),
                                self.content_offset, body)
        out.append(nodes.rubric("", "Description"))
        out.extend(body.children)
        out.append(nodes.rubric("", "Arguments and options"))
        out.append(self._options(option_rows(parser), name))
        out.extend(self._examples(intf, spec[3]))
        out.append(nodes.rubric("", "Python API"))
        out.append(_literal_block(
            "import datalad.api as dl\ndl.%s(...)\n# or ds.%s(...) on a "
            "Dataset" % (spec[3], spec[3]), "python"))
        return out

    def _options(self, rows: list[dict], cmd: str) -> nodes.definition_list:
        dl = nodes.definition_list(classes=["hpcdata-options"])
        for row in rows:
            term = nodes.term()
            for i, opt in enumerate(row["names"]):
                if i:
                    term += nodes.Text(", ")
                text = opt if row["positional"] or not row["value"] \
                    else "%s %s" % (opt, row["value"])
                term += nodes.literal(text, text)
            ident = nodes.make_id("cmd-%s-%s" % (cmd, row["names"][-1]))
            term["ids"].append(ident)
            item = nodes.definition_list_item("", term)
            definition = nodes.definition()
            definition += _para(row["help"] or "(no description)")
            default = row["default"]
            if row["flag"]:
                definition += _para("A flag (takes no value).")
            elif default not in (None, argparse.SUPPRESS) and \
                    not row["positional"]:
                definition += _para("Default: %r" % (default,))
            elif not row["positional"]:
                definition += _para("Default: not set")
            item += definition
            dl += item
        return dl

    def _examples(self, intf, py_name: str) -> list:
        examples = getattr(intf, "_examples_", None) or []
        if not examples:
            return []
        out = [nodes.rubric("", "Examples")]
        for ex in examples:
            out.append(_para(textwrap.dedent(ex.get("text", "")).strip()))
            if ex.get("code_cmd"):
                out.append(_literal_block(ex["code_cmd"], "sh"))
            if ex.get("code_py"):
                out.append(_literal_block(
                    "dl.%s" % ex["code_py"] if ex["code_py"].startswith(
                        py_name) else ex["code_py"], "python"))
        return out


class RemoteParamsDirective(Directive):
    def run(self):
        from datalad_hpcdata.remote.config import CONFIGS, ENV_OVERRIDES
        table = _table(["parameter", "meaning", "environment override"],
                       [["%s" % k, v, ENV_OVERRIDES.get(k, "")]
                        for k, v in CONFIGS.items()])
        return [table]


class RemoteUrlsDirective(Directive):
    def run(self):
        from datalad_hpcdata.remote.remote import SCHEMES
        rows = [[prefix + "...", name] for prefix, name in SCHEMES]
        rows.append(["https://<zenodo-url>/records/... and /api/records/...",
                     "zenodo"])
        return [_table(["URL prefix", "provider"], rows)]


def _table(header: list[str], rows: list[list[str]]) -> nodes.table:
    table = nodes.table()
    group = nodes.tgroup(cols=len(header))
    table += group
    for _ in header:
        group += nodes.colspec(colwidth=1)
    thead = nodes.thead()
    group += thead
    thead += _row(header)
    tbody = nodes.tbody()
    group += tbody
    for r in rows:
        tbody += _row(r, literal_first=True)
    return table


def _row(cells: list[str], literal_first: bool = False) -> nodes.row:
    row = nodes.row()
    for i, cell in enumerate(cells):
        entry = nodes.entry()
        para = nodes.paragraph()
        if literal_first and i == 0:
            para += nodes.literal(cell, cell)
        else:
            para += nodes.Text(cell)
        entry += para
        row += entry
    return row


def setup(app):
    app.add_directive("hpcdata-command", CommandDirective)
    app.add_directive("hpcdata-remote-params", RemoteParamsDirective)
    app.add_directive("hpcdata-remote-urls", RemoteUrlsDirective)
    return {"version": "1", "parallel_read_safe": True,
            "parallel_write_safe": True}
