/*
 * fault.h: fault injection for tests, through one environment variable read here only.
 *
 *   SAEV_FAULT="point=N[@R][,point=N[@R]...]"
 *
 * arms each named point with the number N, on every rank, or only on world rank R with
 * @R. The points:
 *
 *   train.kill_after_steps=N   the trainer's process is killed (SIGKILL, as a node failure)
 *                              once N steps are done, after that step's checkpoints
 *   train.loader_delay_ms=N    every training batch takes N ms longer to read (a slow disk)
 *   store.kill_after_writes=N  a store writer is killed in its (N+1)-th write, after the
 *                              activations and before their status (an incomplete batch)
 *
 * An unknown point or a malformed value ends the job with a usage error naming
 * SAEV_FAULT. Without the variable every point is off and costs one branch.
 */
#ifndef SAEV_FAULT_H
#define SAEV_FAULT_H

#include <stdint.h>

typedef enum { FAULT_TRAIN_KILL_AFTER_STEPS = 0, FAULT_TRAIN_LOADER_DELAY_MS, FAULT_STORE_KILL_AFTER_WRITES, FAULT_N_POINTS } FaultPoint;

/* The point's number on this rank, or -1 when it is not armed here. */
int64_t fault_value(FaultPoint p);
/* At a counting point: kills this process (SIGKILL) when count equals the armed number,
 * logging which fault fired. */
void fault_kill_at(FaultPoint p, int64_t count);
/* At a delay point: sleeps the armed number of milliseconds. */
void fault_delay(FaultPoint p);

#endif
