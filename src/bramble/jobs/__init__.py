"""Jobs on Dask distributed: the scheduler and workers, the master's job runner and exec, host
lists for MPI. A job script gets its Dask client with `bramble.jobs.connect()`."""

from bramble.jobs.dask import connect

__all__ = ["connect"]
