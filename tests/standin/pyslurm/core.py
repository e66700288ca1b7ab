"""pyslurm.Job (the controller's view: only cancel) and the errors."""

CANCELLED = []          # job ids cancelled, in order
CANCEL_FAILS = {}       # job id -> error message for cancel()


class PyslurmError(Exception):
    pass


class RPCError(PyslurmError):
    def __init__(self, errno=-1, msg=None):
        self.errno = errno
        self.msg = msg or "Unspecified error"
        super().__init__(self.msg)


class Job:
    def __init__(self, job_id):
        self.id = int(job_id)

    def send_signal(self, signal, steps="children", hurry=False):
        if self.id in CANCEL_FAILS:
            raise RPCError(msg=CANCEL_FAILS[self.id])
        CANCELLED.append(self.id)

    def cancel(self):
        # pyslurm: cancel() is send_signal(9), i.e. the slurm_kill_job RPC
        self.send_signal(9)
