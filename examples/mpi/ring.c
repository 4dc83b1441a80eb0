/* ring.c: pass a token around all MPI ranks LAPS times, then report how many hops each rank saw.
 *
 * Rank 0 starts the token at 0 and sends it to rank 1; every rank that receives it adds one and sends it
 * to the next rank, wrapping around to rank 0, which starts the next lap. Each receive is one hop, so after
 * LAPS laps the token must read LAPS * size and every rank must have seen LAPS hops.
 *
 * Usage: mpirun -np N ring [LAPS]      (LAPS defaults to 10)
 * The last line is machine-readable: `ring ranks=N laps=L hops=H expected=E seconds=S`.
 * Exit status 0 when the counts are right, 1 otherwise, 2 on a bad argument.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    int rank, size, name_len;
    char host[MPI_MAX_PROCESSOR_NAME];
    long laps = 10;

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Get_processor_name(host, &name_len);

    if (argc > 1) {
        char *end;
        laps = strtol(argv[1], &end, 10);
        if (*end != '\0' || laps < 1 || laps > 100000000) {
            if (rank == 0)
                fprintf(stderr, "ring: error: LAPS must be a whole number from 1 to 100000000, not '%s'\n", argv[1]);
            MPI_Finalize();
            return 2;
        }
    }

    int next = (rank + 1) % size, prev = (rank + size - 1) % size;
    long token = 0, hops = 0;

    MPI_Barrier(MPI_COMM_WORLD);
    double start = MPI_Wtime();
    for (long lap = 0; lap < laps; lap++) {
        if (rank == 0) {
            /* Sendrecv rather than Send then Recv: with one rank, rank 0 is its own neighbour. */
            long sent = token;
            MPI_Sendrecv(&sent, 1, MPI_LONG, next, 0, &token, 1, MPI_LONG, prev, 0, MPI_COMM_WORLD,
                         MPI_STATUS_IGNORE);
            token++;
        } else {
            MPI_Recv(&token, 1, MPI_LONG, prev, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            token++;
            MPI_Send(&token, 1, MPI_LONG, next, 0, MPI_COMM_WORLD);
        }
        hops++;
    }
    double seconds = MPI_Wtime() - start;

    long *all_hops = rank == 0 ? malloc(sizeof(long) * size) : NULL;
    char *all_hosts = rank == 0 ? malloc((size_t)MPI_MAX_PROCESSOR_NAME * size) : NULL;
    MPI_Gather(&hops, 1, MPI_LONG, all_hops, 1, MPI_LONG, 0, MPI_COMM_WORLD);
    MPI_Gather(host, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, all_hosts, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, 0,
               MPI_COMM_WORLD);

    int status = 0;
    if (rank == 0) {
        long expected = laps * size, total = 0;
        printf("ring: %d ranks, %ld laps\n", size, laps);
        for (int r = 0; r < size; r++) {
            printf("  rank %d on %s: %ld hops\n", r, all_hosts + (size_t)r * MPI_MAX_PROCESSOR_NAME, all_hops[r]);
            total += all_hops[r];
        }
        status = (token == expected && total == expected) ? 0 : 1;
        printf("  token %ld after %ld hops (expected %ld): %s\n", token, total, expected, status ? "WRONG" : "OK");
        printf("  time %.6f s, %.3f us per hop\n", seconds, seconds / (double)total * 1e6);
        printf("ring ranks=%d laps=%ld hops=%ld expected=%ld seconds=%.6f\n", size, laps, total, expected, seconds);
        fflush(stdout);
        free(all_hops);
        free(all_hosts);
    }
    MPI_Bcast(&status, 1, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Finalize();
    return status;
}
