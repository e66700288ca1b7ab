"""DataLad extension: reproducible Slurm jobs and research-data special remotes."""

__version__ = "0.1.0"

command_suite = (
    "Schedule, finish and reschedule Slurm jobs with DataLad run records",
    [
        ("datalad_hpcdata.schedule", "SlurmSchedule", "slurm-schedule", "slurm_schedule"),
        ("datalad_hpcdata.finish", "SlurmFinish", "slurm-finish", "slurm_finish"),
        ("datalad_hpcdata.reschedule", "SlurmReschedule", "slurm-reschedule", "slurm_reschedule"),
    ],
)
