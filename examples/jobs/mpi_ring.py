"""MPI ring with mpi4py: bramble mpirun -n 3 -- python3 mpi_ring.py [LAPS].

Rank 0 sends a token around the ring LAPS times; every rank adds its rank number on each
pass. The check on rank 0: the token equals LAPS * sum(range(size)).
"""

from __future__ import annotations

import sys

from mpi4py import MPI


def main() -> int:
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    laps = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    right, left = (rank + 1) % size, (rank - 1) % size
    token = 0
    for _ in range(laps):
        if rank == 0:
            comm.send(token + rank, dest=right)
            token = comm.recv(source=left)
        else:
            token = comm.recv(source=left)
            comm.send(token + rank, dest=right)
    if rank == 0:
        expected = laps * sum(range(size))
        print(
            f"ring of {size} ranks on {MPI.Get_processor_name()}: token {token} after {laps} laps"
        )
        if token != expected:
            print(f"check: FAILED (expected {expected})")
            return 1
        print("check: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
