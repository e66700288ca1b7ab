"""The Slurm workflow: plan, schedule, finish, commit, reschedule.

Plain functions that yield DataLad result records; no module here imports
an Interface class.
"""
