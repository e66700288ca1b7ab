"""`datalad slurm-graph`: the provenance graph of recorded and open jobs."""

from __future__ import annotations

import logging
import os

from datalad.distribution.dataset import datasetmethod, require_dataset
from datalad.interface.base import Interface, build_doc, eval_results
from datalad.interface.results import get_status_dict
from datalad.support.constraints import EnsureChoice, EnsureNone, EnsureStr
from datalad.support.param import Parameter
from datalad.ui import ui

from ..dataset.handle import DatasetHandle
from ..jobs.graph import FORMATS, build, render
from ..jobs.history import RevisionError
from ..jobs.record import RecordError
from .options import dataset_opt
from .render import render_result

lgr = logging.getLogger("datalad.hpcdata.graph")

ACTION = "slurm-graph"


@build_doc
class SlurmGraph(Interface):
    """Draw the provenance graph: which job read and wrote which file

    Nodes are the jobs recorded in the history (``[DATALAD SLURM RUN]``
    records of this extension and of datalad-slurm, and ``datalad run``
    records), on request the open jobs, and every file or directory they
    name; edges go from an input to the job that read it and from a job to
    its outputs. Job nodes show the Slurm job id, state and commit; failed
    and open jobs are marked. Render dot output with Graphviz, e.g.
    ``dot -Tpng provenance.dot -o provenance.png``.
    """

    _examples_ = [
        dict(text="The whole campaign as a PNG (needs Graphviz)",
             code_cmd="datalad slurm-graph --include-open -o campaign.dot "
                      "&& dot -Tpng campaign.dot -o campaign.png",
             code_py="slurm_graph(include_open=True, output='campaign.dot')"),
        dict(text="Jobs since a tag as a mermaid diagram on stdout",
             code_cmd="datalad slurm-graph --since v1.0 --format mermaid",
             code_py="slurm_graph(since='v1.0', format='mermaid')"),
    ]

    result_renderer = "tailored"
    on_failure = "continue"

    _params_ = dict(
        revision=Parameter(
            args=("revision",), metavar="REVISION", nargs="?",
            doc="""the end of the range of history (default HEAD).""",
            constraints=EnsureStr() | EnsureNone()),
        since=Parameter(
            args=("--since",),
            doc="""only records in SINCE..REVISION (default: the whole
            history up to REVISION).""",
            constraints=EnsureStr() | EnsureNone()),
        include_open=Parameter(
            args=("--include-open",), action="store_true",
            doc="""add the open jobs of the job store (state as last seen
            by slurm-finish; Slurm is not asked)."""),
        format=Parameter(
            args=("--format",), metavar="FORMAT",
            doc="""dot (Graphviz, the default), mermaid or json.""",
            constraints=EnsureChoice(*FORMATS) | EnsureNone()),
        output=Parameter(
            args=("-o", "--output"), metavar="FILE",
            doc="""write the graph to FILE instead of standard output.""",
            constraints=EnsureStr() | EnsureNone()),
        dataset=dataset_opt,
    )

    @staticmethod
    @datasetmethod(name="slurm_graph")
    @eval_results
    def __call__(revision=None, *, since=None, include_open=False,
                 format=None, output=None, dataset=None):
        ds = require_dataset(dataset, check_installed=True,
                             purpose="draw the provenance graph")
        fmt = format or "dot"
        res = dict(action=ACTION, ds=ds, type="dataset", logger=lgr)
        try:
            graph = build(DatasetHandle(ds), revision or "HEAD", since or "",
                          include_open)
        except (RevisionError, RecordError) as e:
            yield get_status_dict(status="impossible", path=ds.path,
                                  message=str(e), **res)
            return
        text = render(graph, fmt)
        data = graph.as_dict()
        counts = dict(
            jobs=sum(1 for n in data["nodes"] if n["type"] == "job"),
            files=sum(1 for n in data["nodes"] if n["type"] == "file"))
        if output:
            path = os.path.abspath(output)
            with open(path, "w") as f:
                f.write(text)
            yield get_status_dict(
                status="ok", path=path, format=fmt, **counts, **res,
                message=("wrote the graph (%d jobs, %d files) to %s",
                         counts["jobs"], counts["files"], output))
            return
        yield get_status_dict(status="ok", path=ds.path, format=fmt,
                              graph=text, nodes=data["nodes"],
                              edges=data["edges"], **counts, **res)

    @staticmethod
    def custom_result_renderer(res, **kwargs):
        if res.get("action") == ACTION and "graph" in res:
            ui.message(res["graph"].rstrip("\n"))
            return
        render_result(res, **kwargs)
