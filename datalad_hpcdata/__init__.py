"""DataLad extension: reproducible Slurm jobs, research-data special remote.

Layout and import rule: see docs/architecture.md (checked by
tests/test_layout.py).
"""

from .commands.cmdline import build_only_our_parser

__version__ = "0.1.0"

command_suite = (
    "Schedule, finish and reschedule Slurm jobs with DataLad run records",
    [
        ("datalad_hpcdata.commands.schedule", "SlurmSchedule",
         "slurm-schedule", "slurm_schedule"),
        ("datalad_hpcdata.commands.finish", "SlurmFinish",
         "slurm-finish", "slurm_finish"),
        ("datalad_hpcdata.commands.reschedule", "SlurmReschedule",
         "slurm-reschedule", "slurm_reschedule"),
        ("datalad_hpcdata.commands.graph", "SlurmGraph",
         "slurm-graph", "slurm_graph"),
    ],
)

# `datalad slurm-finish -l` and the like: one parser, not every command's
build_only_our_parser(command_suite)
