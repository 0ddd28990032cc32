"""Parallel Architecture Framework: A work-stealing DAG executor, local or on Ray and Dask."""

from tenfold.parallel_framework.errors import ParallelFrameworkError as ParallelFrameworkError

__all__ = ["ParallelFrameworkError"]
